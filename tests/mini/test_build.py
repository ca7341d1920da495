"""The one-command rebuild, as a smoke test at a tiny fraction of the recipe's steps."""

from __future__ import annotations

import json

import clipag
from clipag_plugin.mini import build


def test_build_writes_loadable_folders_judge_and_record(tmp_path):
    assert build.main(["--out", str(tmp_path), "--scale", "0.003", "--quiet"]) == 0
    record = json.loads((tmp_path / "build.json").read_text())
    assert set(record["files"]) == {
        "judge.safetensors",
        "mini-vanilla/open_clip_config.json",
        "mini-vanilla/open_clip_model.safetensors",
        "mini/open_clip_config.json",
        "mini/open_clip_model.safetensors",
    }
    assert record["trainer_config"]["pgd_steps"] == 3  # the robust model comes from the project's trainer
    model, preprocess = clipag.load(str(tmp_path / "mini"), device="cpu")
    assert model.visual.input_resolution == 64
    assert record["files"]["mini/open_clip_model.safetensors"]["sha256"] != record["files"][
        "mini-vanilla/open_clip_model.safetensors"]["sha256"]
