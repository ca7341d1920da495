"""The page's logic without the page: requests checked, two models painted in turn, files written."""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image

from clipag_plugin.ui.slots import (
    Caps,
    SlotRequest,
    UiInputError,
    baseline_of,
    check_prompt,
    judge_reading,
    model_choices,
    paint_side_by_side,
    vocabulary_note,
)

PROMPT = "a red circle on the left, blue background"
QUICK = dict(steps=12)


@pytest.mark.parametrize("prompt, match", [
    ("", "Type a prompt first"),
    ("   ", "Type a prompt first"),
    ("blurry:-1", "negative weight"),
])
def test_bad_prompts_are_sentences(prompt, match):
    with pytest.raises(UiInputError, match=match):
        check_prompt(prompt)


@pytest.mark.parametrize("request_, match", [
    (SlotRequest("ViT-B/32"), "not available here.*clipag download ViT-B/32"),
    (SlotRequest("mini", steps=1000), "Steps 1000 is out of range: this server runs 1 to 60"),
    (SlotRequest("mini", size=4096), "Size 4096 px is out of range: this server paints 16 to 128"),
    (SlotRequest("mini", param="voxels"), "Parametrization 'voxels' is unknown"),
])
def test_requests_outside_the_caps_are_refused_before_any_run(tmp_path, request_, match):
    with pytest.raises(UiInputError, match=match):
        next(paint_side_by_side(PROMPT, [request_], caps=Caps(max_size=128, max_steps=60), out_dir=tmp_path,
                                choices=["mini", "mini-vanilla"]))


def test_offline_choices_and_baselines(offline_hub):
    assert model_choices(online=False) == ["mini", "mini-vanilla"]
    assert baseline_of("mini") == "mini-vanilla" and baseline_of("mini-vanilla") is None
    assert baseline_of("ViT-B/32") == "openai-ViT-B/32" and baseline_of("fare4-ViT-B/32-laion2b") == "laion2b-ViT-B/32"


def test_mini_names_the_words_it_does_not_know():
    note = vocabulary_note("a watercolor of a fox:1 | blurry:-0.5", "mini")
    assert "'watercolor', 'of', 'fox', 'blurry'" in note and "red" in note
    assert vocabulary_note(PROMPT, "mini") == "" and vocabulary_note("a fox", "ViT-B/32") == ""


def test_two_models_paint_in_turn_and_leave_their_files(tmp_path):
    requests = [SlotRequest("mini", **QUICK), SlotRequest("mini-vanilla", **QUICK)]
    snapshots = [[(v.model, v.status, v.done) for v in views]
                 for views in paint_side_by_side(PROMPT, requests, every=4, out_dir=tmp_path, device="cpu")]
    final = snapshots[-1]
    assert all(done for _, _, done in final)
    # both slots move before either finishes: a frame of each at steps 4, 8, 12
    running = [s for s in snapshots if not any(done for _, _, done in s)]
    assert any("mini: step 4/12" in s[0][1] and "mini-vanilla: step 4/12" in s[1][1] for s in running)
    for name in ("mini", "mini-vanilla"):
        assert Image.open(tmp_path / f"{name}.png").size == (96, 96)
        gif = Image.open(tmp_path / f"{name}.gif")
        assert gif.n_frames >= 3  # the frames at 4, 8, 12 (PIL merges the best image when it equals the last)
        settings = json.loads((tmp_path / f"{name}.json").read_text())
        assert settings["config"]["steps"] == 12 and settings["preset"] == "mini" and settings["model"] == name
    assert "judge reads: a " in final[0][1] and "matches" in final[0][1]


def test_stop_keeps_the_best_image_so_far(tmp_path):
    stop = threading.Event()
    snapshots = []
    for views in paint_side_by_side(PROMPT, [SlotRequest("mini", steps=60)], every=2, out_dir=tmp_path,
                                    device="cpu", stop=stop):
        snapshots.append(views[0].status)
        if len(snapshots) == 3:
            stop.set()
    assert len(snapshots) == 4 and snapshots[-1].startswith("mini: stopped at step 6; best image from step")
    settings = json.loads((tmp_path / "mini.json").read_text())
    assert settings["stopped_at_step"] == 6 and settings["best_step"] <= 6
    assert Image.open(tmp_path / "mini.png").size == (96, 96)


def test_judge_reading_of_a_render():
    from clipag_plugin.mini import world

    image = world.render_clean([world.caption_index(0, 0, 0, 2)])[0]
    text = judge_reading(image, world.caption("red", "circle", "left", "blue"))
    assert text.startswith("judge reads: a red circle on the left, blue background")
    assert text.endswith("matches 4 of 4 asked (colour, shape, position, background)")
