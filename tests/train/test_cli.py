"""`clipag finetune` and `clipag eval` end to end on tiny models and synthetic files (offline)."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

import clipag
from clipag_plugin.cli import main as cli_main
from clipag_plugin.cli.finetune import build_parser
from clipag_plugin.train import AttackConfig, retrieval_accuracy, zero_shot_accuracy

from .conftest import COLORS, png_bytes, write_caption_folder, write_tar_shards


def test_finetune_cli_tar_shards_yaml_and_push(tiny_model_dir, tmp_path, monkeypatch, capsys):
    write_tar_shards(tmp_path / "tars", 12, shards=2, corrupt_every=5)
    (tmp_path / "recipe.yaml").write_text(f"model: {tiny_model_dir}\nsteps: 2\naccum_steps: 2\nbatch_size: 4\n"
                                          "pgd_steps: 1\nnum_workers: 0\nlr: 0.01\n")
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, **kw):
            return "https://huggingface.co/" + kw["repo_id"]

        def upload_folder(self, **kw):
            uploads.append(kw)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "run"
    rc = cli_main(["finetune", "--config", str(tmp_path / "recipe.yaml"), "--data", str(tmp_path / "tars"),
                   "--steps", "3", "--out", str(out), "--no-progress", "--push-to-hub", "me/tiny-robust"])
    assert rc == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 3 and saved["accum_steps"] == 2 and saved["lr"] == 0.01  # flag > file > default
    assert saved["weight_decay"] == 1e-4 and saved["accum_steps"] == 2
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["skipped"] >= 1
    assert uploads and uploads[0]["repo_id"] == "me/tiny-robust"
    model, _ = clipag.load(str(out / "model"), device="cpu")
    assert model.visual.input_resolution == 32
    assert "uploaded to https://huggingface.co/me/tiny-robust" in capsys.readouterr().out


def test_finetune_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "sqrt(pixel count)" in text and "--pgd-steps" in text and "torchrun" in text
    assert cli_main(["finetune", "--out", "x", "--norm", "l2", "--clean-weight", "2"]) == 2
    assert "clean_weight" in capsys.readouterr().err


def _class_folder(root, per_class=3):
    for c, name in enumerate(list(COLORS)[:3]):
        folder = root / f"{name}_thing"
        folder.mkdir(parents=True)
        for k in range(per_class):
            (folder / f"{k}.png").write_bytes(png_bytes(c + 4 * k))
    (root / "red_thing" / "broken.png").write_bytes(b"nope")
    return root


def test_eval_cli_two_models_json_table_and_judge(tiny_model_dir, tiny_rn_clip, tmp_path, monkeypatch, capsys):
    rn_dir = tmp_path / "tiny-rn"  # where the tiny_rn_clip fixture saved its model
    assert (rn_dir / "open_clip_config.json").is_file()
    classes = _class_folder(tmp_path / "classes")
    write_caption_folder(tmp_path / "caps", 6)
    judge = types.ModuleType("clipag_plugin.mini.judge")
    judge.score_folder = lambda folder: {"folder": str(folder), "colour_shape": 0.5}
    monkeypatch.setitem(sys.modules, "clipag_plugin.mini.judge", judge)
    report = tmp_path / "report.json"
    rc = cli_main(["eval", "--model", str(tiny_model_dir), "--model", str(rn_dir), "--zeroshot", str(classes),
                   "--retrieval", str(tmp_path / "caps"), "--l2", "0.5", "--linf", "4/255", "--pgd-steps", "2",
                   "--templates", "a photo of a {}.", "--json", str(report), "--judge", str(tmp_path)])
    assert rc == 0
    data = json.loads(report.read_text())
    assert data["attacks"] == ["pgd2-l2 eps=0.5", "pgd2-linf eps=4/255"]
    for name in (str(tiny_model_dir), str(rn_dir)):
        zs = data["results"][name]["zeroshot"]
        assert zs["classes"] == 3 and zs["skipped"] == 1 and zs["clean"]["n"] == 9
        assert zs["pgd2-l2 eps=0.5"]["top1"] <= zs["clean"]["top1"]
        assert set(data["results"][name]["retrieval"]["clean"]) == {
            "image_to_text_r1", "image_to_text_r5", "text_to_image_r1", "text_to_image_r5"}
    assert data["judge"]["colour_shape"] == 0.5
    printed = capsys.readouterr().out
    assert "zeroshot | clean | top1" in printed and "retrieval | pgd2-linf eps=4/255 | image_to_text_r1" in printed


def test_eval_api_on_in_memory_tensors(tiny_clip):
    model, _ = tiny_clip
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 32, generator=g)
    tokens = clipag.tokenize([f"caption {i}" for i in range(5)] + ["caption 0"])  # a duplicate caption
    clean = retrieval_accuracy(model, images, tokens)
    attacked = retrieval_accuracy(model, images, tokens, AttackConfig("l2", 2.0, 5))
    assert 0 <= attacked["image_to_text_r1"] <= clean["image_to_text_r1"] <= 1
    assert retrieval_accuracy(model, images, tokens, "l2:2.0:5") == attacked
    assert clean["image_to_text_r5"] >= clean["image_to_text_r1"]
    acc = zero_shot_accuracy(model, images, torch.tensor([0, 1, 2, 0, 1, 2]), ["cat", "dog", "car"])
    assert acc["n"] == 6 and acc["top5"] == 1.0  # 3 classes: top-5 always hits
    with pytest.raises(ValueError, match="NORM:EPS"):
        AttackConfig.parse("l2")
    assert AttackConfig.parse("linf:8/255").eps == pytest.approx(8 / 255)
    assert cli_main(["eval"]) == 2
    assert cli_main(["eval", "--judge", "x"]) in (0, 2)
