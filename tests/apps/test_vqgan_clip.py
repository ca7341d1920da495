"""The bundled VQGAN+CLIP example and its adapter, on a tiny CLIP and a tiny random VQGAN."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch

pytest.importorskip("taming")

from clipag_plugin.adapters import vqgan_clip as adapter

from clipag_plugin.guidance.cutouts import Cutouts
from tests.conftest import example_module


@pytest.fixture(scope="module")
def app() -> types.ModuleType:
    """The example module, imported from its file as a script's module would be."""
    with example_module("vqgan_clip", "vqgan_clip_example") as module:
        yield module


def _args(app, tmp_path, *extra: str):
    return app.build_parser().parse_args(
        ["-s", "32", "32", "--vqgan", "random", "-sd", "0", "-q", "-o", str(tmp_path / "out.png"), *extra]
    )


def test_patch_swaps_clip_and_switches_the_trick_off_then_restores(app):
    before = {name: sys.modules.get(name) for name in ("clip", "CLIP", "CLIP.clip")}
    app_clip, app_make, app_norm = app.clip, app.make_cutouts, app.normalize
    with adapter.patch(app) as patcher:
        assert patcher.active
        import clip  # noqa: F401 - resolved through sys.modules

        assert sys.modules["clip"].__clipag__ and app.clip is sys.modules["clip"]
        from CLIP import clip as nested

        assert nested is sys.modules["clip"]
        cut = app.make_cutouts("latest", 32, 32, 1.0)
        assert isinstance(cut, Cutouts)
        assert (cut.mode, cut.cutn, len(cut.augs), cut.noise_fac) == ("none", 1, 0, 0.0)
    assert {name: sys.modules.get(name) for name in before} == before
    assert (app.clip, app.make_cutouts, app.normalize) == (app_clip, app_make, app_norm)


def test_each_switch_acts_alone(app):
    with adapter.patch(app, swap_clip=False, single_cutout=False, no_augment=True, no_noise=False):
        assert app.clip is not sys.modules.get("clip") or not getattr(app.clip, "__clipag__", False)
        cut = app.make_cutouts("latest", 32, 8, 1.0)
        assert (cut.mode, cut.cutn, len(cut.augs), cut.noise_fac) == ("latest", 8, 0, 0.1)
    with adapter.patch(app, single_cutout=True, no_augment=False, no_noise=True):
        cut = app.make_cutouts("updated", 32, 8, 1.0)
        assert (cut.mode, cut.cutn, cut.augment_name, cut.noise_fac) == ("none", 1, "updated", 0.0)


def test_reference_script_cutout_classes_are_patched_too():
    ref = types.ModuleType("reference_generate")
    ref.MakeCutouts = ref.MakeCutoutsOrig = object  # what the reference script defines
    with adapter.patch(ref, swap_clip=False):
        cut = ref.MakeCutoutsOrig(224, 32, cut_pow=1.0)
        assert isinstance(cut, Cutouts) and cut.mode == "none"
    assert ref.MakeCutouts is object and ref.MakeCutoutsOrig is object


def test_attributes_are_guaranteed_on_a_bare_open_clip_model():
    from tests.conftest import make_open_clip_model

    model = make_open_clip_model()
    for name in ("input_resolution", "output_dim"):
        if hasattr(model.visual, name):
            delattr(model.visual, name)
    adapter.ensure_clip_attributes(model)
    assert model.visual.input_resolution == 32 and model.visual.output_dim == 32


def test_few_steps_lower_the_loss_with_the_trick_off(app, tmp_path, tiny_model_dir):
    args = _args(app, tmp_path, "a red circle", "--steps", "8", "-m", str(tiny_model_dir), "-lr", "0.2")
    with adapter.patch(app):  # deterministic: one whole-image cutout, no augmentation, no noise
        result = app.run(args)
        assert app.normalize.__self__.name == str(tiny_model_dir)  # the model's own mean/std
    assert len(result.losses) == 9
    assert result.losses[-1] < result.losses[0] - 1e-3, result.losses
    assert result.output.is_file()


def test_cli_with_the_reference_trick_writes_png_and_gif(app, tmp_path, tiny_model_dir):
    gif = tmp_path / "run.gif"
    code = app.main(["a red circle:1 | blurry:-0.3:-inf", "--steps", "2", "-cuts", "4", "-cutm", "updated",
                     "-m", str(tiny_model_dir), "--vqgan", "random", "-s", "32", "32", "-sd", "1", "-q",
                     "-o", str(tmp_path / "out.png"), "--gif", str(gif)])
    assert code == 0 and (tmp_path / "out.png").is_file()
    from PIL import Image

    with Image.open(gif) as frames:  # PIL merges identical consecutive frames (unchanged codes)
        assert frames.format == "GIF" and 1 <= frames.n_frames <= 3
    with Image.open(tmp_path / "out.png") as png:
        assert png.size == (32, 32) and "blurry" in png.info["comment"]


def test_prompt_weights_reach_the_loss(app, tmp_path, tiny_model_dir):
    with adapter.patch(app):
        pos = app.run(_args(app, tmp_path, "-p", "a red circle:2", "--steps", "0", "-m", str(tiny_model_dir)))
        neg = app.run(_args(app, tmp_path, "-p", "a red circle:-1", "--steps", "0", "-m", str(tiny_model_dir)))
    assert pos.losses[0] > 0 and neg.losses[0] < 0
    assert pos.losses[0] == pytest.approx(-2 * neg.losses[0], rel=1e-5)
    with pytest.raises(ValueError, match="empty prompt"):
        app.run(_args(app, tmp_path, "-p", "a red circle | ", "--steps", "0", "-m", str(tiny_model_dir)))


def test_image_prompt_and_init_image(app, tmp_path, tiny_model_dir):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "red.png")
    args = _args(app, tmp_path, "-ip", f"{tmp_path / 'red.png'}:1", "-ii", str(tmp_path / "red.png"),
                 "-iw", "0.5", "--steps", "1", "-m", str(tiny_model_dir), "-cuts", "3", "-cutm", "original")
    with adapter.patch(app, single_cutout=False):
        result = app.run(args)
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_missing_vqgan_needs_the_explicit_random_flag(app, tmp_path, tiny_model_dir, offline_hub):
    argv = ["a red circle", "--steps", "0", "-m", str(tiny_model_dir), "-s", "32", "32", "-q",
            "-o", str(tmp_path / "o.png")]
    with pytest.raises(SystemExit, match="--random-vqgan"):
        app.main(argv)
    with pytest.warns(UserWarning, match="UNTRAINED RANDOM VQGAN"):
        assert app.main([*argv, "--random-vqgan"]) == 0


def test_offline_clip_falls_back_to_the_embedded_model(app, tmp_path, tiny_model_dir, offline_hub, caplog):
    # the default fallback is the shipped "mini" model; a tiny folder stands in for it here.
    # The fallback is announced through logging, which an app's warnings filter cannot hide.
    args = _args(app, tmp_path, "a red circle", "--steps", "0", "-m", "ViT-B/32")
    with adapter.patch(app, fallback=str(tiny_model_dir)), warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        result = app.run(args)
    assert any(r.name == "clipag_plugin.adapters" and "not available offline" in r.getMessage()
               for r in caplog.records)
    assert result.clip_model == str(tiny_model_dir)
