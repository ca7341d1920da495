"""The bundled CLIPDraw example and its adapter, on a tiny random CLIP (offline)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from clipag_plugin.adapters import clipdraw as adapter
from clipag_plugin.adapters._patch import CLIP_MODULE_NAMES

from tests.conftest import example_module

_MISSING = object()



@pytest.fixture(scope="module")
def app():
    """The example, imported as a module the way a user would import their CLIPDraw script."""
    with example_module("clipdraw", "clipdraw_example") as module:
        yield module


def plain_loss(app, model, image, text_features):
    """The un-augmented loss of a finished picture (a fixed yardstick for before/after)."""
    with torch.no_grad():
        x = app.augment(image[None], model.visual.input_resolution, False, 1, torch.Generator())
        return app.drawing_loss(model.encode_image(app.clip_input(x, model, True)), text_features).item()


@pytest.mark.parametrize("augment", [True, False], ids=["augment", "no-augment"])
def test_short_run_lowers_the_loss(app, tiny_clip, augment):
    model, _ = tiny_clip
    kwargs = dict(num_paths=16, canvas=32, seed=1, augment_images=augment, progress=False, backend="torch")
    with adapter.patch(app=app, augment=None, normalize=None):
        text = model.encode_text(app.clip.tokenize("a red circle")).detach()
        start = app.clipdraw("a red circle", model, num_iter=0, **kwargs)
        end = app.clipdraw("a red circle", model, num_iter=12, **kwargs)
    assert len(end.losses) == 12 and end.image.shape == (3, 32, 32)
    assert plain_loss(app, model, end.image, text) < plain_loss(app, model, start.image, text) - 1e-3
    widths = end.scene.widths
    assert widths.min() >= 1.0 and widths.max() <= app.MAX_WIDTH
    assert end.scene.colors.min() >= 0 and end.scene.colors.max() <= 1


@pytest.mark.parametrize("augment, copies", [(False, 1), (True, 4)])
def test_encoder_runs_once_per_step(app, tiny_clip, monkeypatch, augment, copies):
    model, _ = tiny_clip
    batches = []
    original = model.encode_image

    def counting(images):
        batches.append(images.shape[0])
        return original(images)

    monkeypatch.setattr(model, "encode_image", counting)
    with adapter.patch(app=app, augment=augment, normalize=True):
        app.clipdraw("a cat", model, num_iter=4, num_paths=6, canvas=32, progress=False)
    assert batches == [copies] * 4


def test_patch_swaps_and_restores_everything(app):
    import torchvision.transforms as T

    before = {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES}
    app_clip, perspective, crop = app.clip, T.RandomPerspective, T.RandomResizedCrop
    assert app.USE_AUGMENT is True and app.USE_NORMALIZED_CLIP is True
    with adapter.patch(app=app, augment=False, normalize=False, notebook=True) as patcher:
        import clip
        from CLIP import clip as clip2

        assert clip is clip2 is app.clip and getattr(clip, "__clipag__", False)
        assert app.USE_AUGMENT is False and app.USE_NORMALIZED_CLIP is False
        x = torch.rand(1, 3, 40, 48)
        assert torch.equal(T.RandomPerspective(fill=1, p=1, distortion_scale=0.5)(x), x)
        assert T.RandomResizedCrop(24, scale=(0.7, 0.9))(x).shape == (1, 3, 24, 24)
        assert patcher.active
    assert {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES} == before
    assert app.clip is app_clip and app.USE_AUGMENT is True and app.USE_NORMALIZED_CLIP is True
    assert T.RandomPerspective is perspective and T.RandomResizedCrop is crop


def test_each_switch_is_independent(app):
    before = {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES}
    with adapter.patch(app=app, clip=False, augment=False, normalize=None):
        assert {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES} == before
        assert app.USE_AUGMENT is False and app.USE_NORMALIZED_CLIP is True
    with adapter.patch(app=app, augment=None, normalize=None):
        assert app.USE_AUGMENT is True and getattr(app.clip, "__clipag__", False)


def test_app_without_hooks_is_refused_and_nothing_stays_patched():
    import types

    bare = types.ModuleType("bare_app")
    before = {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES}
    with pytest.raises(AttributeError, match="USE_AUGMENT"):
        adapter.patch(app=bare)
    assert {name: sys.modules.get(name, _MISSING) for name in CLIP_MODULE_NAMES} == before


def test_shim_loads_the_requested_clipag_model(app, tiny_model_dir):
    with adapter.patch(model=str(tiny_model_dir), app=app):
        model, preprocess = app.clip.load("ViT-B/32", "cpu", jit=False)
        assert model.visual.input_resolution == 32 and callable(preprocess)
        assert app.clip.last_loaded == str(tiny_model_dir)


def test_command_line_writes_png_svg_gif_and_config(app, tiny_model_dir, tmp_path):
    out = tmp_path / "draw" / "red.png"
    code = app.main([
        "a red circle", "--steps", "4", "--paths", "8", "--canvas", "32", "--model", str(tiny_model_dir),
        "--output", str(out), "--frames", str(tmp_path / "frames"), "--frame-every", "2",
        "--gif", str(tmp_path / "run.gif"), "--no-augment", "--quiet", "--device", "cpu",
    ])
    assert code == 0
    from PIL import Image

    assert Image.open(out).size == (32, 32)
    assert out.with_suffix(".svg").read_text().count("<path ") == 8
    config = json.loads(out.with_suffix(".json").read_text())
    assert config["augment"] is False and config["normalize"] is True and config["steps"] == 4
    assert len(list((tmp_path / "frames").glob("*.png"))) == 2
    assert Image.open(tmp_path / "run.gif").n_frames == 3
    assert not any(getattr(sys.modules.get(n), "__clipag__", False) for n in CLIP_MODULE_NAMES)


NOTEBOOK_CELLS = '''
import clip
import torch
from torchvision import transforms
model, preprocess = clip.load('ViT-B/32', torch.device('cpu'), jit=False)
augment_trans = transforms.Compose([
    transforms.RandomPerspective(fill=1, p=1, distortion_scale=0.5),
    transforms.RandomResizedCrop(224, scale=(0.7,0.9)),
])
img = torch.rand(1, 3, 224, 224)
views = [augment_trans(img) for n in range(4)]
'''


def test_notebook_code_runs_unchanged_under_the_adapter(tiny_model_dir):
    namespace: dict = {}
    with adapter.patch(model=str(tiny_model_dir), notebook=True):
        exec(compile(NOTEBOOK_CELLS, "<clipdraw notebook>", "exec"), namespace)
    assert namespace["model"].visual.input_resolution == 32  # clipag's model, not OpenAI's download
    views = namespace["views"]
    assert all(torch.allclose(v, namespace["img"], atol=1e-6) for v in views)  # un-augmented copies


def test_identical_views_are_encoded_once_into_real_rows(tiny_model_dir, monkeypatch):
    """Forks normalize the features in place (``image_features /= image_features.norm(...)``): the
    encoded copies must be rows of their own, and telling copies apart costs one reduction."""
    from clipag_plugin.adapters._patch import clip_shim

    shim = clip_shim(str(tiny_model_dir), dedupe=True)
    model, _ = shim.load("ViT-B/32", device="cpu")
    comparisons = []
    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: comparisons.append(1) or real_equal(a, b))
    image = torch.rand(1, 3, 32, 32).repeat(4, 1, 1, 1)
    features = model.encode_image(image)
    features /= features.norm(dim=-1, keepdim=True)
    assert len(comparisons) == 1 and model.clipag_stats["images"] == 1
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(4))
    different = image.clone()
    different[2] += 0.1
    assert model.encode_image(different).shape == (4, features.shape[1]) and model.clipag_stats["images"] == 5


def test_off_a_terminal_the_example_logs_lines_instead_of_a_bar(tiny_model_dir, tmp_path):
    """Run as a user's job would be (stderr to a file): status lines every 25 steps, no redrawn bar,
    no import-time warning from OpenAI's package."""
    import subprocess
    import sys

    from tests.conftest import EXAMPLES

    done = subprocess.run([sys.executable, str(EXAMPLES / "clipdraw" / "clipdraw.py"), "a red circle", "--steps", "26",
                           "--paths", "4", "--canvas", "32", "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "d.png")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "clipag: clipdraw: step 25/26, loss" in done.stderr and "clipag: clipdraw: step 26/26" in done.stderr
    assert "\r" not in done.stderr and "it/s" not in done.stderr
    assert "pkg_resources" not in done.stderr
