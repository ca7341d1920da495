"""The CLIPDraw tab's logic: two models draw in turn, files written, bad requests refused."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from clipag_plugin.ui.drawing import DrawRequest, draw_side_by_side
from clipag_plugin.ui.slots import Caps, UiInputError

PROMPT = "a red circle on the left, blue background"


def test_two_models_draw_and_leave_png_svg_gif_json(tmp_path):
    requests = [DrawRequest("mini", strokes=8, steps=6), DrawRequest("mini-vanilla", strokes=8, steps=6)]
    rounds = list(draw_side_by_side(PROMPT, requests, every=3, out_dir=tmp_path, device="cpu"))
    assert len(rounds) == 3  # frames at 3 and 6, then the finished drawings
    final = rounds[-1]
    for view, name in zip(final, ("mini", "mini-vanilla"), strict=True):
        assert view.done and view.status.startswith(f"{name}: done; 8 strokes") and "judge reads" in view.status
        assert Image.open(tmp_path / f"{name}.png").size == (96, 96)
        assert "<svg" in (tmp_path / f"{name}.svg").read_text() and "<path" in (tmp_path / f"{name}.svg").read_text()
        assert Image.open(tmp_path / f"{name}.gif").n_frames >= 2
        settings = json.loads((tmp_path / f"{name}.json").read_text())
        assert settings["config"]["paths"] == 8 and settings["config"]["augment"] is False


@pytest.mark.parametrize("request_, prompt, match", [
    (DrawRequest("mini", strokes=5000), PROMPT, "Strokes 5000 is out of range"),
    (DrawRequest("mini", steps=999), PROMPT, "Steps 999 is out of range"),
    (DrawRequest("mini"), "a red circle:1 | blurry:-0.3", "CLIPDraw takes one prompt"),
    (DrawRequest("ViT-B/32"), PROMPT, "not available here"),
    (DrawRequest("mini"), "", "Type a prompt first"),
])
def test_bad_requests_are_sentences(tmp_path, request_, prompt, match):
    with pytest.raises(UiInputError, match=match):
        next(draw_side_by_side(prompt, [request_], caps=Caps(max_steps=300), out_dir=tmp_path,
                               choices=["mini", "mini-vanilla"]))
