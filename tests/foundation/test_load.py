"""``clipag.load`` through the real loading code: folders, files, the Hub cache (offline), errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import clipag
from clipag_plugin import hub, registry
from clipag_plugin.registry import HubFiles, ModelEntry
from tests.conftest import TINY_CFG, make_open_clip_model, save_open_clip_folder, seed_hub_cache


def _assert_same_weights(model, reference):
    ours = model.inner.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(ours[key], value), key


def test_load_folder_has_openai_surface(tiny_model_dir):
    reference = make_open_clip_model()
    model, preprocess = clipag.load(str(tiny_model_dir), device="cpu")
    _assert_same_weights(model, reference)
    assert not model.training
    assert model.dtype == torch.float32
    assert model.visual.input_resolution == 32
    assert model.visual.output_dim == 32
    image = torch.rand(3, 3, 32, 32)
    text = clipag.tokenize(["a red circle", "a blue square"])
    logits_per_image, logits_per_text = model(image, text)
    assert logits_per_image.shape == (3, 2) and torch.equal(logits_per_text, logits_per_image.t())
    # the same numbers open_clip gives
    f_img, f_txt, scale = reference(image, text.long())
    torch.testing.assert_close(logits_per_image, scale * f_img @ f_txt.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode_image(image), reference.encode_image(image))
    assert model.logit_scale is model.inner.logit_scale


def test_preprocess_cfg_from_checkpoint_is_used(tmp_path):
    cfg = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    folder = save_open_clip_folder(make_open_clip_model(), tmp_path / "m", preprocess_cfg=cfg)
    model, preprocess = clipag.load(str(folder), device="cpu")
    assert tuple(preprocess.transforms[-1].mean) == (0.5, 0.5, 0.5)
    x = torch.full((1, 3, 32, 32), 0.75)
    assert torch.allclose(model.normalize(x), torch.ones_like(x))


def test_load_hf_hub_offline_from_seeded_cache(offline_hub, tiny_model_dir):
    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir()}
    seed_hub_cache(offline_hub, "someone/tiny-clip", files)
    model, _ = clipag.load("hf-hub:someone/tiny-clip", device="cpu")
    _assert_same_weights(model, make_open_clip_model())


def test_registry_hub_entry_offline(offline_hub, tiny_model_dir, monkeypatch):
    entry = ModelEntry("tiny-test", HubFiles("org/tiny", revision="main"), "tiny", True, "L2", "-", "MIT", None, "t")
    monkeypatch.setitem(registry.REGISTRY, "tiny-test", entry)
    files = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir()}
    seed_hub_cache(offline_hub, "org/tiny", files)
    model, _ = clipag.load("tiny-test", device="cpu")
    assert model.name == "tiny-test"
    assert "tiny-test" in clipag.available_models()


def test_offline_and_not_cached_names_the_file_and_the_fix(offline_hub):
    with pytest.raises(hub.OfflineError) as info:
        clipag.load("fare4-ViT-B/32-laion2b", device="cpu")
    message = str(info.value)
    assert "chs20/FARE4-ViT-B-32-laion2B-s34B-b79K" in message
    assert "open_clip_config.json" in message
    assert "clipag download fare4-ViT-B/32-laion2b" in message


def test_unknown_name_lists_choices_and_suggests_hf_hub():
    with pytest.raises(KeyError) as info:
        clipag.load("ViT-B/23", device="cpu")
    message = info.value.args[0]
    assert "ViT-B/32" in message and "mini" in message and "Did you mean 'ViT-B/32'" in message
    with pytest.raises(KeyError, match="hf-hub:laion/some-clip"):
        clipag.load("laion/some-clip", device="cpu")


def test_single_file_safetensors_infers_architecture(tmp_path):
    from safetensors.torch import save_file

    reference = make_open_clip_model(seed=3)
    path = tmp_path / "weights.safetensors"
    save_file(reference.state_dict(), str(path))
    model, _ = clipag.load(str(path), device="cpu")
    _assert_same_weights(model, reference)


def test_open_clip_training_checkpoint_with_sidecar_config(tmp_path):
    reference = make_open_clip_model(seed=4)
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    model, _ = clipag.load(str(path), device="cpu")
    _assert_same_weights(model, reference)


def test_mismatched_weights_are_reported(tmp_path):
    folder = save_open_clip_folder(make_open_clip_model(), tmp_path / "m")
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["vision_cfg"]["layers"] = 3
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    with pytest.raises(ValueError, match="missing keys"):
        clipag.load(str(folder), device="cpu")


def test_jit_true_warns_and_returns_eager(tiny_model_dir):
    with pytest.warns(UserWarning, match="TorchScript"):
        model, _ = clipag.load(str(tiny_model_dir), device="cpu", jit=True)
    assert isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule)


def test_device_none_picks_available(tiny_model_dir):
    from clipag_plugin.loading import default_device

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = clipag.load(str(tiny_model_dir))
    assert next(model.parameters()).device.type == default_device()


def test_encode_text_accepts_longer_padding_only(tiny_model_dir, tmp_path):
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["text_cfg"]["context_length"] = 20
    folder = save_open_clip_folder(make_open_clip_model(cfg), tmp_path / "ctx20", cfg)
    model, _ = clipag.load(str(folder), device="cpu")
    assert model.encode_text(clipag.tokenize(["a cat"])).shape == (1, 32)
    with pytest.raises(ValueError, match="context length 20"):
        model.encode_text(clipag.tokenize(["word " * 30]))


def test_load_or_fallback_uses_fallback_when_offline(offline_hub, tiny_model_dir, monkeypatch):
    from clipag_plugin.loading import load_or_fallback

    with pytest.warns(UserWarning, match="not available offline"):
        model, _, used = load_or_fallback("fare4-ViT-B/32-laion2b", device="cpu", fallback=str(tiny_model_dir))
    assert used == str(tiny_model_dir)
    with pytest.raises(KeyError):
        load_or_fallback("no-such-model", device="cpu", fallback=str(tiny_model_dir))


def test_weights_as_load_makes_them_on_cuda_read_fp16_input(tiny_model_dir):
    """On CUDA ``load`` converts the weights with open_clip's ``convert_weights_to_lp`` (embeddings and
    norms stay fp32); the model's dtype is what its input layer reads, as OpenAI's ``conv1``."""
    from open_clip.model import convert_weights_to_lp

    model, _ = clipag.load(str(tiny_model_dir), device="cpu")
    convert_weights_to_lp(model.inner, dtype=torch.float16)
    assert model.inner.visual.class_embedding.dtype == torch.float32  # the first parameter is not the input's
    assert model.dtype == torch.float16
    out = model.encode_image(torch.rand(2, 3, 32, 32))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda(tiny_model_dir):
    model, _ = clipag.load(str(tiny_model_dir), device="cuda")
    assert model.dtype == torch.float16
    out = model.encode_image(torch.rand(2, 3, 32, 32, device="cuda"))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_model_with_another_tokenizer_is_loaded_with_a_warning(tmp_path):
    """A text tower that reads a non-CLIP tokenizer (e.g. BERT WordPiece) cannot take clipag.tokenize's
    byte-pair ids: load says so instead of handing back silently wrong text features."""
    folder = save_open_clip_folder(make_open_clip_model(), tmp_path / "bert-text")
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "bert-base-uncased"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="bert-base-uncased.*byte-pair"):
        model, _ = clipag.load(str(folder), device="cpu")
    assert model.encode_image(torch.zeros(1, 3, 32, 32)).shape[-1] == TINY_CFG["embed_dim"]


def test_a_folder_named_like_a_registry_model_does_not_shadow_it(tmp_path, monkeypatch, caplog):
    """An output folder `mini/` in the working directory: `mini` is still the registry's model (as
    OpenAI's clip.load looks its table up first), and `./mini` is the folder."""
    from tests.conftest import TINY_CFG, make_open_clip_model, save_open_clip_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mini").mkdir()  # e.g. a batch run's output folder, no model inside
    model, _ = clipag.load("mini", device="cpu")
    assert model.name == "mini" and model.visual.input_resolution == 96
    assert "both a registry model and a folder here; loading the registry model (write ./mini" in caplog.text
    save_open_clip_folder(make_open_clip_model(), tmp_path / "mini", TINY_CFG)
    assert clipag.load("./mini", device="cpu")[0].visual.input_resolution == 32
