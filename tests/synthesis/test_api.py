"""generate / generate_tensor on a tiny real CLIP, bad inputs, and the default-model choice."""

import pytest
import torch

import clipag_plugin
from clipag_plugin.synthesis import api, models
from clipag_plugin.synthesis.api import generate, generate_tensor
from clipag_plugin.tokenizer import ContextLengthError

QUICK = dict(steps=8, views=2, crops=2, init="noise", progress=False)


def test_generate_is_exported_lazily():
    assert clipag_plugin.generate is generate


def test_end_to_end_tiny_clip_lowers_the_loss(tiny_clip):
    model, _ = tiny_clip
    result = generate_tensor("a red barn", model, seeds=[0], steps=10, views=1, crops=0, augment=False,
                             init="noise", lr=0.05, progress=False)
    losses = [h["loss"][0] for h in result.history]
    assert min(losses[-3:]) < losses[0] and float(result.loss[0]) <= min(losses) + 1e-6
    # the kept image is scored as a whole: its loss is 1 - its cosine to the prompt, recomputed here
    with torch.no_grad():
        image = model.encode_pixels(result.images).float()
        text = model.encode_text(clipag_plugin.tokenize(["a red barn"])).float()
    cos = torch.nn.functional.cosine_similarity(image, text)
    assert float(result.loss[0]) == pytest.approx(1 - float(cos[0]), abs=1e-4)
    assert float(result.cosine[0]) == pytest.approx(float(cos[0]), abs=1e-4)
    assert result.images.shape == (1, 3, 32, 32) and result.models and result.prompts[0].text == "a red barn"
    assert -1 <= float(result.cosine[0]) <= 1


def test_generate_returns_pil_and_lists(tiny_clip):
    image = generate("a fox", tiny_clip, **QUICK)
    assert image.size == (32, 32) and image.mode == "RGB"
    images = generate("a fox", model=tiny_clip, seeds=[0, 1], **QUICK)
    assert isinstance(images, list) and len(images) == 2


def test_generate_accepts_the_older_model_first_order_with_a_warning(tiny_clip):
    with pytest.warns(DeprecationWarning, match="prompt comes first"):
        image = generate(tiny_clip, "a fox", **QUICK)
    assert image.size == (32, 32)


def test_gmm_init_and_custom_size(tiny_clip):
    result = generate_tensor("a fox", tiny_clip, steps=2, views=1, crops=1, init="gmm", gmm_candidates=8,
                             size=40, progress=False)
    assert result.images.shape == (1, 3, 40, 40)


def test_model_by_path(tiny_model_dir):
    result = generate_tensor("a fox", str(tiny_model_dir), steps=1, views=1, crops=0, augment=False,
                             init="gray", progress=False)
    assert result.models == [str(tiny_model_dir)]


@pytest.mark.parametrize(
    ("prompt", "options", "error", "match"),
    [
        ("", {}, ValueError, "prompt"),
        ("a | ", {}, ValueError, "empty prompt"),
        ("blurry:-1", {}, ValueError, "positive weight"),
        ("a fox", {"size": 8}, ValueError, "size 8 is not supported"),
        ("a fox", {"size": 100000}, ValueError, "not supported"),
        ("a fox", {"stepz": 3}, ValueError, "unknown generate option"),
        ("a fox", {"init": "perlin"}, ValueError, "choose from"),
        ("a fox", {"init": "image"}, ValueError, "init_image"),
        ("a fox", {"seeds": []}, ValueError, "seeds"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_clip, prompt, options, error, match):
    with pytest.raises(error, match=match):
        generate_tensor(prompt, tiny_clip, **{**QUICK, **options})


def test_long_prompt_errors_unless_truncated(tiny_clip):
    long = "a very long prompt " * 40
    with pytest.raises(ContextLengthError, match="context length"):
        generate_tensor(long, tiny_clip, **QUICK)
    assert generate_tensor(long, tiny_clip, truncate=True, **{**QUICK, "steps": 1}).images.shape[0] == 1


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="Valid names"):
        generate_tensor("a fox", "no-such-model", **QUICK)


def test_default_model_prefers_cached_vitb32(tmp_path, monkeypatch, offline_hub):
    monkeypatch.setattr(models, "_mini_available", lambda: True)
    name, reason = api.default_model_choice(check_network=False)
    assert name == "mini" and "offline" in reason
    cache = tmp_path / "clipag-cache"
    cache.mkdir(exist_ok=True)
    (cache / "CLIPAG_ViTB32.safetensors").write_bytes(b"x")
    assert api.resolve_default_model() == "ViT-B/32"


def test_cli_fallback_to_mini_says_why(monkeypatch, offline_hub):
    from clipag_plugin.cli.generate import resolve_models

    monkeypatch.setattr(models, "_mini_available", lambda: True)
    names, note = resolve_models(None)
    assert names == ["mini"] and "offline mode is on" in note
    assert resolve_models(["mini-vanilla"]) == (["mini-vanilla"], "")


def test_default_model_without_mini_says_what_to_do(monkeypatch, offline_hub):
    monkeypatch.setattr(models, "_mini_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="--model"):
        api.resolve_default_model()


def test_default_model_when_reachable(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr("clipag_plugin.hub.is_offline", lambda: False)
    assert api.default_model_choice()[0] == "ViT-B/32"


def test_no_augment_calls_the_real_encoder_once_per_step(tiny_clip, monkeypatch):
    model, _ = tiny_clip
    calls = []
    original = model.encode_pixels
    monkeypatch.setattr(model, "encode_pixels", lambda x: calls.append(x.shape[0]) or original(x))
    generate_tensor("a fox", model, steps=4, views=1, crops=0, augment=False, init="gray", progress=False)
    assert calls == [1, 1, 1, 1, 1]  # one per step, then the final image is scored
    calls.clear()
    generate_tensor("a fox", model, steps=2, views=3, crops=2, init="gray", progress=False)
    # augmented: still one call per step, on the image itself (scored, to keep the best) + V + P
    assert calls == [6, 6, 1]


def test_plain_open_clip_model_is_accepted():
    from open_clip.model import CLIP

    torch.manual_seed(0)
    inner = CLIP(embed_dim=16, vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                 text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}).eval()
    result = generate_tensor("a fox", inner, steps=2, views=1, crops=0, augment=False, init="gray", progress=False)
    assert result.images.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="encode_image"):
        generate_tensor("a fox", object(), steps=1, progress=False)


def test_deterministic_under_seed_end_to_end(tiny_clip):
    options = dict(steps=3, views=2, crops=2, init="gmm", gmm_candidates=8, progress=False)
    a = generate_tensor("a fox | blurry:-0.3", tiny_clip, seeds=[5], **options)
    b = generate_tensor("a fox | blurry:-0.3", tiny_clip, seeds=[5], **options)
    c = generate_tensor("a fox | blurry:-0.3", tiny_clip, seeds=[6], **options)
    assert torch.equal(a.images, b.images) and a.history == b.history
    assert not torch.equal(a.images, c.images)


def test_generate_iter_streams_frames_then_the_same_result_as_generate_tensor(tiny_clip):
    model, _ = tiny_clip
    options = dict(steps=7, views=1, crops=0, augment=False, init="noise", lr=0.05, seeds=[0, 1])
    items = list(clipag_plugin.generate_iter("a red barn", model, every=3, **options))
    frames, result = items[:-1], items[-1]
    assert [f.step for f in frames] == [3, 6, 7] and all(f.total == 7 for f in frames)  # the last step always
    assert all(f.images.shape == (2, 3, 32, 32) and f.images.device.type == "cpu" for f in frames)
    assert isinstance(result, clipag_plugin.GenerationResult) and result.seeds == [0, 1]
    plain = generate_tensor("a red barn", model, progress=False, **options)
    torch.testing.assert_close(result.images, plain.images)
    torch.testing.assert_close(frames[-1].result.images, plain.images)


def test_closing_generate_iter_stops_the_run_and_keeps_the_best_so_far(tiny_clip):
    model, _ = tiny_clip
    calls = []
    encode = model.encode_pixels
    model.encode_pixels = lambda x: calls.append(len(x)) or encode(x)
    try:
        stream = clipag_plugin.generate_iter("a red barn", model, every=2, steps=50, views=1, crops=0,
                                             augment=False, init="noise", lr=0.05)
        frame = next(stream)
        frame = next(stream)
        stream.close()
    finally:
        del model.encode_pixels
    assert frame.step == 4 and len(calls) <= 5  # no step ran after the close
    assert torch.isfinite(frame.result.loss).all() and frame.result.images.shape == (1, 3, 32, 32)
    assert all(p.requires_grad for p in model.parameters())  # the model's state is restored on close
    with pytest.raises(ValueError, match="every=0"):
        next(clipag_plugin.generate_iter("a red barn", model, every=0))


def test_size_zero_is_an_error_not_the_models_size(tiny_clip):
    with pytest.raises(ValueError, match="size 0 is not supported: choose an integer between 16 and 2048"):
        generate_tensor("a fox", tiny_clip, size=0, steps=1, views=1, crops=0, augment=False, init="noise",
                        progress=False)
