"""The one-command rebuild, as a smoke test at a tiny fraction of the recipe's steps."""

from __future__ import annotations

import json

import pytest

import clipag
from clipag_plugin.mini import build, pretrain


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
    assert record["trainer_config"]["objective"] == "classwise" and record["trainer_config"]["eps_ramp_steps"] > 0
    # then the same trainer continues it with its own samples as negatives, BatchNorm statistics frozen
    assert record["samples_trainer_config"]["negatives_weight"] > 0 and record["samples_trainer_config"]["model"] == "mini"
    assert record["samples_trainer_config"]["train_batchnorm"] is False and "samples" in record["times_s"]
    model, preprocess = clipag.load(str(tmp_path / "mini"), device="cpu")
    assert model.visual.input_resolution == pretrain.INPUT_SIZE  # reads the 64 px world at 96 px
    assert record["files"]["mini/open_clip_model.safetensors"]["sha256"] != record["files"][
        "mini-vanilla/open_clip_model.safetensors"]["sha256"]

    # rebuilding one stage keeps the others' files and their part of the record
    before = {k: v["sha256"] for k, v in record["files"].items()}
    (tmp_path / "build.json").write_text(json.dumps({**record, "times_s": {**record["times_s"], "judge": 123.0}}))
    assert build.main(["--out", str(tmp_path), "--scale", "0.003", "--quiet", "--only", "robust"]) == 0
    again = json.loads((tmp_path / "build.json").read_text())
    assert {k: v["sha256"] for k, v in again["files"].items() if not k.startswith("mini/")} == {
        k: v for k, v in before.items() if not k.startswith("mini/")}
    assert again["times_s"]["judge"] == 123.0 and again["judge_recipe"] == record["judge_recipe"]
    assert again["files"]["mini/open_clip_model.safetensors"]["sha256"] == before["mini/open_clip_model.safetensors"]


def test_partial_build_needs_the_other_stages(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the full build there first"):
        build.build(tmp_path, only=["robust"], progress=False)
    (tmp_path / "build.json").write_text(json.dumps({"seed": 3}))
    with pytest.raises(ValueError, match="built with seed 3, this run uses 0; pass --seed 3"):
        build.build(tmp_path, only=["robust"], progress=False)
    with pytest.raises(ValueError, match=r"unknown build stage\(s\) \['robot'\]; choose from"):
        build.build(tmp_path, only=["robot"], progress=False)
