"""CLIPStyler example, its adapter and the VGG19 content network: tiny models, offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipag_plugin import vgg as V
from clipag_plugin.guidance.directional import PatchTricks
from tests.conftest import example_module


@pytest.fixture(scope="module")
def app():
    """The example script, imported by path as module ``clipstyler``."""
    with example_module("clipstyler", "clipstyler") as module:
        yield module


@pytest.fixture(scope="module")
def tiny_vgg():
    return V.random_vgg19_features(width_divisor=16, seed=0)


# --- StyleNet -------------------------------------------------------------------------------


def test_stylenet_shapes_range_and_reference_size(app):
    from clipag_plugin.synthesis.stylenet import StyleNet

    net = StyleNet()
    for shape in ((1, 3, 64, 64), (2, 3, 32, 48)):
        out = net(torch.rand(shape))
        assert out.shape == shape and out.min() > 0 and out.max() < 1
    assert net(torch.rand(1, 3, 16, 16), use_sigmoid=False).min() < 0  # raw output without the sigmoid
    # the reference UNet(ngf=16) has this many parameters (same layers, same shapes)
    assert sum(p.numel() for p in net.parameters()) == 615_267
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.rand(1, 3, 60, 64))


def test_stylenet_gradient_reaches_every_parameter(app):
    from clipag_plugin.synthesis.stylenet import StyleNet

    torch.manual_seed(0)
    net = StyleNet(ngf=4)
    net(torch.rand(1, 3, 32, 32)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- VGG19 ----------------------------------------------------------------------------------


def _fake_timm_state(width_divisor: int = 16) -> dict[str, torch.Tensor]:
    """A timm-style VGG19 state dict (features.* + pre_logits + head), small channels."""
    features = V.vgg19_features(width_divisor)
    state = {f"features.{k}": torch.randn_like(v) for k, v in features.state_dict().items()}
    last = features[-3].out_channels
    state.update({
        "pre_logits.fc1.weight": torch.zeros(8, last, 7, 7), "pre_logits.fc1.bias": torch.zeros(8),
        "pre_logits.fc2.weight": torch.zeros(8, 8, 1, 1), "pre_logits.fc2.bias": torch.zeros(8),
        "head.fc.weight": torch.zeros(10, 8), "head.fc.bias": torch.zeros(10),
    })
    return state


def test_vgg19_layout_matches_torchvision():
    from torchvision.models.vgg import cfgs, make_layers

    with torch.device("meta"):  # shapes only, no 20M-parameter initialisation
        ours, theirs = V.vgg19_features(), make_layers(cfgs["E"])
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert len(ours.state_dict()) == 32


def test_convert_timm_vgg_features_maps_and_checks():
    target = V.vgg19_features(16)
    expected = {k: v.shape for k, v in target.state_dict().items()}
    state = _fake_timm_state(16)
    converted = V.convert_timm_vgg_features(state, expected)
    assert len(state) == 38 and len(converted) == 32
    assert torch.equal(converted["21.weight"], state["features.21.weight"])
    target.load_state_dict(converted, strict=True)
    bad = dict(state)
    del bad["features.34.bias"]
    with pytest.raises(ValueError, match=r"missing \['34.bias'\]"):
        V.convert_timm_vgg_features(bad, expected)
    bad = dict(state, **{"features.0.weight": torch.zeros(4, 3, 5, 5)})
    with pytest.raises(ValueError, match="'0.weight' has shape"):
        V.convert_timm_vgg_features(bad, expected)
    with pytest.raises(ValueError, match="outside features"):
        V.convert_timm_vgg_features(dict(state, **{"stem.weight": torch.zeros(1)}), expected)
    with pytest.raises(ValueError, match="batch norm"):
        V.convert_timm_vgg_features(dict(state, **{"features.37.weight": torch.zeros(1)}), expected)


def test_vgg_offline_error_names_repo_file_and_command(offline_hub):
    from clipag_plugin.hub import OfflineError

    with pytest.raises(OfflineError) as info:
        V.load_vgg19_features()
    message = str(info.value)
    assert "timm/vgg19.tv_in1k" in message and "model.safetensors" in message
    assert "python -m clipag_plugin.vgg" in message and "hf download" in message


def _seed(cache: Path, files: dict) -> None:
    repo = cache / "models--timm--vgg19.tv_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_vgg_loads_from_the_hub_cache(offline_hub, monkeypatch, tmp_path):
    from safetensors.torch import save_file

    state = _fake_timm_state(16)
    save_file(state, str(tmp_path / "model.safetensors"))
    _seed(offline_hub, {"model.safetensors": (tmp_path / "model.safetensors").read_bytes()})
    full = V.vgg19_features
    monkeypatch.setattr(V, "vgg19_features", lambda width_divisor=1: full(16))  # a small file for the test
    features = V.load_vgg19_features()
    assert features.is_random_stand_in is False and not features.training
    assert torch.equal(features[21].weight, state["features.21.weight"])
    assert all(not p.requires_grad for p in features.parameters())
    only = V.read_vgg_features_state(tmp_path / "model.safetensors")
    assert len(only) == 32 and all(k.startswith("features.") for k in only)


def test_vgg_features_are_post_relu_at_the_reference_layers(tiny_vgg):
    image = torch.rand(1, 3, 32, 32)
    feats = V.vgg_features(tiny_vgg, image)
    x = (image - torch.tensor(V.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(V.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(feats["conv4_2"], tiny_vgg[:23](x.clone()))
        assert torch.allclose(feats["conv5_2"], tiny_vgg[:32](x.clone()))
    assert (feats["conv4_2"] >= 0).all()
    assert V.content_loss(feats, feats).item() == 0.0
    assert tiny_vgg.is_random_stand_in is True


# --- content images -------------------------------------------------------------------------


def test_load_content_demo_photo_and_size(app):
    image = app.load_content("astronaut", 64)
    assert image.shape == (1, 3, 64, 64) and 0 <= image.min() and image.max() <= 1
    wide = app.load_content(np.zeros((300, 600, 3), np.uint8), 128, keep_aspect=True)
    assert wide.shape == (1, 3, 64, 128)


def test_load_content_grayscale_and_rgba_are_converted_with_a_message(app):
    with pytest.warns(UserWarning, match="grayscale"):
        gray = app.load_content("camera", 32)
    assert gray.shape == (1, 3, 32, 32) and torch.equal(gray[:, 0], gray[:, 1])
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white
    with pytest.warns(UserWarning, match="alpha channel"):
        out = app.load_content(rgba, 32)
    assert torch.allclose(out, torch.ones_like(out))
    with pytest.warns(UserWarning, match="grayscale"):
        app.load_content(torch.rand(1, 40, 40), 32)


def test_load_content_odd_and_huge_sizes(app, tmp_path):
    with pytest.warns(UserWarning, match="multiples of 8.*96x96"):
        assert app.load_content("coffee", 100).shape == (1, 3, 96, 96)
    with pytest.warns(UserWarning, match="multiples of 8"):
        assert app.load_content(np.zeros((50, 70, 3), np.uint8), 70, keep_aspect=True).shape[-2:] == (48, 64)
    with pytest.raises(ValueError, match="too large.*--size 2048"):
        app.load_content("coffee", 10_000)
    with pytest.raises(ValueError, match="too small"):
        app.load_content("coffee", 8)
    big = app.load_content(np.zeros((3000, 2000, 3), np.uint8), 64)  # a large photo is simply resized
    assert big.shape == (1, 3, 64, 64)
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (400, 400)).save(path)
    import PIL.Image

    old = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = 1000  # make this file count as a decompression bomb
    try:
        with pytest.raises(ValueError, match="too large to open safely"):
            app.load_content(path, 64)
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = old


def test_load_content_bad_inputs(app, tmp_path):
    with pytest.raises(FileNotFoundError, match="astronaut"):
        app.load_content("no-such-image.jpg", 64)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        app.load_content(tmp_path / "broken.png", 64)
    with pytest.raises(ValueError, match="expected"):
        app.load_content(np.zeros((2, 3, 4, 5)), 64)


# --- the loop -------------------------------------------------------------------------------


def _setup(app, tiny_clip, tiny_vgg, **overrides):
    import clipag

    model, _ = tiny_clip
    config = app.StyleConfig(**{"steps": 5, "num_crops": 8, "lr": 2e-3, **overrides})
    content = app.load_content("chelsea", 32)
    targets = app.prepare_targets(content, "oil painting", model, clipag.tokenize, tiny_vgg, config)
    return model, clipag.tokenize, content, config, targets


def test_few_steps_lower_the_loss(app, tiny_clip, tiny_vgg):
    model, tokenize, content, config, targets = _setup(app, tiny_clip, tiny_vgg)
    torch.manual_seed(config.seed)
    from clipag_plugin.synthesis.stylenet import StyleNet

    net = StyleNet()

    def evaluate() -> float:
        with torch.no_grad():
            losses = app.step_losses(net(content), targets, model, tiny_vgg, config, PatchTricks(threshold=None),
                                     torch.Generator().manual_seed(123))
            return app.weighted_total(losses, config).item()

    before = evaluate()
    image, history, _ = app.stylize(content, "oil painting", model, tokenize, tiny_vgg, config,
                                    tricks=PatchTricks(threshold=None), progress=False, style_net=net,
                                    targets=targets)
    after = evaluate()
    assert len(history) == config.steps and set(history[0]) == {"total", "patch", "global", "content", "tv"}
    assert image.shape == content.shape
    assert after < before


def test_level_c_has_no_patch_loss_and_level_a_no_warp(app, tiny_clip, tiny_vgg, monkeypatch):
    from clipag_plugin.adapters.clipstyler import tricks_for

    model, tokenize, content, config, targets = _setup(app, tiny_clip, tiny_vgg, steps=1)
    run = dict(progress=False, targets=targets)
    _, history, _ = app.stylize(content, "fire", model, tokenize, tiny_vgg, config, tricks=tricks_for("c"), **run)
    assert history[0]["patch"] == 0.0 and history[0]["global"] > 0
    from clipag_plugin.synthesis import styling

    seen = []
    real = styling.sample_patch_params
    monkeypatch.setattr(styling, "sample_patch_params",
                        lambda *a, **k: seen.append(k["perspective"]) or real(*a, **k))
    app.stylize(content, "fire", model, tokenize, tiny_vgg, config, tricks=tricks_for("a"), **run)
    app.stylize(content, "fire", model, tokenize, tiny_vgg, config, tricks=tricks_for("full"), **run)
    assert seen == [False, True]


# --- adapter --------------------------------------------------------------------------------


def test_adapter_swaps_clip_and_tricks_then_restores(app):
    from clipag_plugin.adapters import clipstyler as adapter

    before_clip = sys.modules.get("clip")
    before_tricks = app.TRICKS
    with adapter.patch(level="b", modules=[app]):
        import clip

        assert getattr(clip, "__clipag__", False) and sys.modules["clip"] is clip
        assert app.TRICKS == PatchTricks(perspective=False, threshold=None, patch_loss=True)
    assert sys.modules.get("clip") is before_clip and app.TRICKS is before_tricks
    with adapter.patch(level="c"):  # finds the app by its TRICKS attribute
        assert app.TRICKS.patch_loss is False
    assert app.TRICKS is before_tricks
    with pytest.raises(RuntimeError), adapter.patch(level="a", modules=[app]):
        raise RuntimeError("app crashed")
    assert app.TRICKS is before_tricks and sys.modules.get("clip") is before_clip
    with adapter.patch(modules=[app]):  # default: level a, the augmentation trick off
        assert app.TRICKS == PatchTricks(perspective=False)
    with adapter.patch(level=None, modules=[app]):  # only the clip swap
        assert app.TRICKS is before_tricks and getattr(sys.modules["clip"], "__clipag__", False)
    assert app.TRICKS is before_tricks and sys.modules.get("clip") is before_clip
    import torchvision.transforms as T

    real = T.RandomPerspective
    image = torch.rand(1, 3, 16, 16)
    with adapter.patch(level="b", original=True, modules=[app]):  # the original script's transform
        assert T.RandomPerspective(fill=0, p=1, distortion_scale=0.5)(image) is image
    assert T.RandomPerspective is real
    with adapter.patch(level="full", original=True, modules=[app]):
        assert T.RandomPerspective is real
    with pytest.raises(ValueError, match="a: no perspective warp"):
        adapter.patch(level="z")
    assert adapter.tricks_for("global-only") == adapter.LEVELS["c"] and adapter.tricks_for("FULL") == PatchTricks()


# --- command line ---------------------------------------------------------------------------


def test_main_end_to_end_with_random_vgg(app, tiny_model_dir, offline_hub, tmp_path, capsys):
    out = tmp_path / "styled.png"
    rc = app.main(["--content", "astronaut", "--style", "oil painting", "--steps", "2", "--size", "32",
                   "--crops", "4", "--model", str(tiny_model_dir), "--random-vgg", "--no-augment",
                   "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    from PIL import Image

    assert Image.open(out).size == (32, 32)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["vgg"] == "RANDOM stand-in" and record["level"] == "a"
    assert record["tricks"]["perspective"] is False and record["config"]["num_crops"] == 4
    assert "RANDOM VGG stand-in" in capsys.readouterr().err
    assert app.TRICKS == PatchTricks()  # restored after main


def test_main_offline_without_vgg_weights_fails_clearly(app, tiny_model_dir, offline_hub, tmp_path, capsys):
    rc = app.main(["--content", "astronaut", "--style", "fire", "--steps", "1", "--size", "32",
                   "--model", str(tiny_model_dir), "--device", "cpu", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "x.png").exists()
    assert "timm/vgg19.tv_in1k" in err and "python -m clipag_plugin.vgg" in err and "--random-vgg" in err
