"""`clipag generate`, `clipag compare`, `clipag gmm`: outputs, and one-line errors for bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from clipag_plugin.cli import main as clipag_main
from clipag_plugin.cli.compare import parse_setting
from clipag_plugin.synthesis.presets import PRESETS

PRESET_PARAM = PRESETS["mini"].as_dict().get("param", "pixels")
FAST = ["--steps", "3", "--views", "1", "--crops", "1", "--init", "noise", "--quiet"]


def test_generate_writes_image_summary_frames_and_gif(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "fox.png"
    rc = clipag_main(["generate", "a fox | blurry:-0.3", "--model", str(tiny_model_dir), "--out", str(out),
                      "--save-every", "1", "--gif", str(tmp_path / "fox.gif"), *FAST])
    assert rc == 0
    assert Image.open(out).size == (32, 32)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["config"]["steps"] == 3 and summary["config"]["lr"] == 0.0175 and len(summary["best_loss"]) == 1
    assert len(list((tmp_path / "fox_frames").glob("*.png"))) == 3
    gif = Image.open(tmp_path / "fox.gif")
    assert getattr(gif, "n_frames", 1) == 3
    assert "loss" in capsys.readouterr().out


def test_generate_batch_of_seeds_and_no_augment(tiny_model_dir, tmp_path):
    out = tmp_path / "b.png"
    rc = clipag_main(["generate", "a barn", "--model", str(tiny_model_dir), "--out", str(out), "--seed", "3", "4",
                      "--views", "1", "--crops", "0", "--no-augment", "--steps", "2", "--init", "gray", "--quiet"])
    assert rc == 0 and (tmp_path / "b_s3.png").is_file() and (tmp_path / "b_s4.png").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["config"]["augment"] is False


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--out", "/nonexistent-dir/x.png"], "does not exist"),
        (["--out", "{tmp}/x.unknownext"], "extension"),
        (["--size", "4"], "not supported"),
        (["--model", "no-such-model"], "Unknown model"),
        (["--init", "image", "--init-image", "{tmp}/missing.png"], "not found"),
        (["--gif", "{tmp}/a.gif"], "--save-every"),
        (["--lr", "-1"], "lr"),
    ],
)
def test_generate_bad_input_is_one_line(tiny_model_dir, tmp_path, capsys, args, match):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["generate", "a fox", *FAST]
    if "--model" not in args:
        base += ["--model", str(tiny_model_dir)]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "o.png")]
    rc = clipag_main(base + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_generate_empty_and_long_prompt(tiny_model_dir, tmp_path, capsys):
    base = ["--model", str(tiny_model_dir), "--out", str(tmp_path / "o.png"), *FAST]
    assert clipag_main(["generate", " ", *base]) == 2
    assert clipag_main(["generate", "word " * 100, *base]) == 2
    assert "truncate" in capsys.readouterr().err
    assert clipag_main(["generate", "word " * 100, "--truncate", *base]) == 0


def test_generate_read_only_folder(tiny_model_dir, tmp_path, capsys, monkeypatch):
    # tests may run as root (who can write anywhere), so stand in for a read-only folder
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr("clipag_plugin.synthesis.frames.os.access", lambda path, mode: str(path) != str(ro))
    rc = clipag_main(["generate", "a", "--model", str(tiny_model_dir), "--out", str(ro / "x.png"), *FAST])
    assert rc == 2 and "not writable" in capsys.readouterr().err


def test_compare_writes_a_labelled_grid(tiny_model_dir, tmp_path):
    out = tmp_path / "grid.png"
    rc = clipag_main(["compare", "a fox", "--models", str(tiny_model_dir), "--settings", "default",
                      "views=1,crops=0,augment=false", "--seed", "0", "1", "--cell", "48", "--out", str(out),
                      "--heldout", str(tiny_model_dir), *FAST])
    assert rc == 0
    grid = Image.open(out)
    assert grid.width > 2 * 48 and grid.height > 2 * 48
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [c["setting"] for c in summary["columns"]] == ["default", "views=1,crops=0,augment=false"]
    # scored by the same weights, the held-out cosine is the cosine of the (un-augmented) best image
    run = summary["columns"][1]["runs"][0]
    assert run["prompt"] == "a fox" and len(run["heldout_cosine"]) == 2
    assert run["heldout_cosine"] == pytest.approx(run["best_cosine"], abs=1e-4)


def test_compare_several_prompts_and_the_judge(tiny_rn_clip, tmp_path, capsys, monkeypatch):
    """Rows are (prompt, seed) pairs; --judge scores each column with the mini world's judge."""
    from clipag_plugin.mini import judge as mini_judge

    seen = []

    def fake_score(images, prompts, judge=None):
        seen.append((tuple(images.shape), list(prompts)))
        return {"colour": 1.0, "shape": 0.5, "position": 0.0, "background": 1.0, "colour+shape": 0.5, "all": 0.0}

    monkeypatch.setattr(mini_judge, "score", fake_score)
    folder = tmp_path / "rn"
    from tests.conftest import TINY_RN_CFG, make_open_clip_model, save_open_clip_folder

    save_open_clip_folder(make_open_clip_model(TINY_RN_CFG), folder, TINY_RN_CFG)
    prompts = ["a red circle in the center, blue background", "a cyan cross at the top, yellow background"]
    out = tmp_path / "grid.png"
    rc = clipag_main(["compare", *prompts, "--models", str(folder), "--settings", "views=1,crops=0,augment=false",
                      "--seed", "0", "1", "--judge", "--init", "gray", "--steps", "2", "--cell", "32",
                      "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [r["prompt"] for r in summary["columns"][0]["runs"]] == prompts
    assert summary["columns"][0]["judge"]["colour+shape"] == 0.5
    assert seen == [((4, 3, 64, 64), [prompts[0], prompts[0], prompts[1], prompts[1]])]
    assert "colour+shape" in capsys.readouterr().out
    rc = clipag_main(["compare", "a fox", "--models", str(folder), "--judge", "--steps", "1", "--out", str(out)])
    assert rc == 2 and "mini-world captions" in capsys.readouterr().err


def test_parse_setting():
    assert parse_setting("views=1, crops=0,augment=false") == {"views": 1, "crops": 0, "augment": False}
    assert parse_setting("threshold=none,lr=0.1") == {"threshold": None, "lr": 0.1}
    assert parse_setting("default") == {}
    for bad in ("views", "colour=1", "augment=maybe", "views=x"):
        with pytest.raises(ValueError):
            parse_setting(bad)


def test_compare_bad_setting_is_one_line(tiny_model_dir, tmp_path, capsys):
    rc = clipag_main(["compare", "a", "--models", str(tiny_model_dir), "--settings", "colour=1",
                      "--out", str(tmp_path / "g.png"), *FAST])
    assert rc == 2 and "unknown option" in capsys.readouterr().err


def test_gmm_fit_and_sample(tmp_path, capsys):
    for cls, color in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        arr = np.full((20, 20, 3), color, dtype=np.uint8)
        arr[::3] = 128
        Image.fromarray(arr).save(tmp_path / "imgs" / cls / "x.png")
    out = tmp_path / "g.npz"
    assert clipag_main(["gmm", "fit", str(tmp_path / "imgs"), "--out", str(out), "--resolution", "4",
                        "--patches-per-image", "60"]) == 0
    assert out.is_file() and "2 classes" in capsys.readouterr().out
    assert clipag_main(["gmm", "sample", "--gmm", str(out), "--out", str(tmp_path / "s.png"), "--n", "4"]) == 0
    assert clipag_main(["gmm", "fit", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_generate_nan_saves_best_and_exits_1(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import torch

    from clipag_plugin.guidance.prompts import Prompt
    from clipag_plugin.synthesis import api
    from clipag_plugin.synthesis.loop import GenerateConfig, GenerationResult

    def fake_generate(*args, **kwargs):
        return GenerationResult(torch.full((1, 3, 8, 8), 0.5), torch.tensor([0.9]), torch.tensor([0.1]),
                                torch.tensor([2]), seeds=[0], models=["m"], prompts=[Prompt("a")], nan_step=3,
                                config=GenerateConfig())

    monkeypatch.setattr(api, "generate_tensor", fake_generate)
    out = tmp_path / "n.png"
    rc = clipag_main(["generate", "a", "--model", str(tiny_model_dir), "--out", str(out), "--quiet"])
    assert rc == 1 and out.is_file() and "step 3" in capsys.readouterr().err


def test_generate_without_any_default_model(tmp_path, capsys, monkeypatch, offline_hub):
    from clipag_plugin.synthesis import models

    monkeypatch.setattr(models, "_mini_available", lambda: False)
    rc = clipag_main(["generate", "a", "--out", str(tmp_path / "x.png"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "No default model" in err and len(err.strip().splitlines()) == 1


def test_generate_param_levels_and_preset_reach_the_json(tiny_model_dir, tmp_path):
    out = tmp_path / "m.png"
    rc = clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(out), "--param", "multires",
                      "--levels", "1", "4", "32", "--preset", "mini", "--steps", "2", "--init", "gray", "--quiet"])
    assert rc == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["preset"] == "mini" and summary["config"]["param"] == "multires"
    assert summary["config"]["levels"] == [1, 4, 32] and summary["config"]["optimizer"] == "l2"
    assert set(summary["explicit"]) == {"param", "levels", "steps", "init"}


def test_generate_multires_default_levels_are_resolved_in_the_json(tiny_model_dir, tmp_path):
    out = tmp_path / "d.png"
    rc = clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(out), "--param", "multires",
                      "--steps", "1", "--init", "gray", "--views", "1", "--crops", "0", "--quiet"])
    assert rc == 0
    assert json.loads(out.with_suffix(".json").read_text())["config"]["levels"] == [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--param", "wavelets"], "invalid choice: 'wavelets' (choose from 'pixels', 'multires')"),
        (["--preset", "fast"], "invalid choice: 'fast' (choose from 'auto', 'none', 'notebook', 'mini')"),
    ],
)
def test_generate_unknown_param_or_preset_lists_the_choices(tiny_model_dir, tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exit_:
        clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.png"),
                     *FAST, *args])
    assert exit_.value.code == 2 and match in capsys.readouterr().err


def test_generate_levels_that_do_not_fit_are_one_line(tiny_model_dir, tmp_path, capsys):
    rc = clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.png"),
                      *FAST, "--param", "multires", "--levels", "1", "64"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "levels 64 do not fit a 32 px image" in err and len(err.splitlines()) == 1


def test_generate_off_a_terminal_logs_status_lines_not_bars(tiny_model_dir, tmp_path, capsys):
    rc = clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(tmp_path / "s.png"),
                      "--steps", "50", "--views", "1", "--crops", "0", "--init", "gray"])
    err = capsys.readouterr().err
    assert rc == 0 and "\r" not in err  # no progress bar redraws in a log
    status = [line for line in err.splitlines() if "step " in line]
    assert [line.split("step ")[1].split(",")[0] for line in status] == ["25/50", "50/50"]
    rc = clipag_main(["generate", "a fox", "--model", str(tiny_model_dir), "--out", str(tmp_path / "q.png"),
                      "--steps", "50", "--views", "1", "--crops", "0", "--init", "gray", "--quiet"])
    assert rc == 0 and capsys.readouterr().err == ""


def test_compare_applies_each_model_preset_and_records_it(tmp_path, capsys):
    out = tmp_path / "c.png"
    rc = clipag_main(["compare", "a red circle on the left, blue background", "--models", "mini-vanilla", "mini",
                      "--steps", "2", "--candidates", "16", "--judge", "--out", str(out), "--quiet", "--device", "cpu",
                      "--settings", "default", "param=pixels,levels=none"])
    assert rc == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    columns = summary["columns"]
    assert [c["preset"] for c in columns] == ["mini"] * 4
    assert [c["config"]["param"] for c in columns] == [PRESET_PARAM, "pixels"] * 2
    assert all(c["config"]["steps"] == 2 for c in columns)
    assert "all" in capsys.readouterr().out


def test_demo_writes_a_judged_grid_of_both_mini_models(tmp_path, capsys):
    out = tmp_path / "demo.png"
    rc = clipag_main(["demo", "--prompts", "1", "--out", str(out), "--quiet"])
    width, height = Image.open(out).size
    assert rc == 0 and width > 128 and height > 2 * 128  # prompts across, one row per model
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [c["model"] for c in summary["columns"]] == ["mini-vanilla", "mini"]
    assert all(c["preset"] == "mini" and "colour+shape" in c["judge"] for c in summary["columns"])
    printed = capsys.readouterr().out
    assert "mini-vanilla" in printed and "colour+shape" in printed


def test_demo_rejects_a_caption_outside_the_world(tmp_path, capsys):
    rc = clipag_main(["demo", "--prompt", "a watercolor of a fox", "--out", str(tmp_path / "d.png"), "--quiet"])
    assert rc == 2 and "mini-world captions" in capsys.readouterr().err


def test_demo_prompts_let_the_four_shapes_take_turns():
    from clipag_plugin.cli.demo import demo_prompts
    from clipag_plugin.mini import world

    prompts = demo_prompts(8)
    shapes = [world.parse_caption(p)["shape"] for p in prompts]
    assert shapes == list(world.SHAPES) * 2 and len(set(prompts)) == 8
    assert demo_prompts(8) == prompts and demo_prompts(8, seed=1) != prompts
    with pytest.raises(ValueError, match="between 1 and 600"):
        demo_prompts(0)


def test_across_grid_puts_each_models_picture_under_its_prompt():
    from clipag_plugin.cli.compare import make_across_grid

    colours = {(m, p): (40 * m + 20, 60 * p + 10, 200) for m in range(2) for p in range(3)}
    columns = [[Image.new("RGB", (8, 8), colours[m, p]) for p in range(3)] for m in range(2)]
    cell = 32
    grid = make_across_grid(columns, ["vanilla\nscore 0.1", "robust"], ["first", "second", "third"], per_row=2, cell=cell)
    pixels = grid.load()
    # two blocks (prompts 0-1, then 2), each with a caption line and one row per model
    width, height = grid.size
    assert width < 3 * (cell + 4) + 200 and height > 4 * cell
    found = {}
    for y in range(height):
        for x in range(width):
            for key, colour in colours.items():
                if pixels[x, y] == colour and key not in found:
                    found[key] = (x, y)
    assert set(found) == set(colours)
    # same prompt: same column, robust below vanilla; prompt 2 starts a second block below the first
    assert found[0, 0][0] == found[1, 0][0] and found[1, 0][1] > found[0, 0][1]
    assert found[0, 1][0] > found[0, 0][0] and found[0, 1][1] == found[0, 0][1]
    assert found[0, 2][0] == found[0, 0][0] and found[0, 2][1] > found[1, 0][1]
    with pytest.raises(ValueError, match="per_row"):
        make_across_grid(columns, ["a", "b"], ["x", "y", "z"], per_row=0)
