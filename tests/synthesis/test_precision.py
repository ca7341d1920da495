"""Generation on models exactly as ``clipag.load`` returns them on CUDA (fp16 weights; on the CPU a
half-precision copy stands in): the dtypes the encoder sees under each precision, the caller's
model left untouched, ``auto`` chosen from the compute capability of the device in use, and the
fp16 loss scale."""

from __future__ import annotations

import pytest
import torch
from open_clip.model import convert_weights_to_lp

from clipag_plugin.guidance.prompts import Prompt
from clipag_plugin.synthesis import accel, loop
from clipag_plugin.synthesis.api import generate_tensor, load_guides
from clipag_plugin.synthesis.loop import GenerateConfig, optimize

PLAIN = dict(steps=3, views=1, crops=0, augment=False, init="noise", threshold=None)


def _as_loaded_on_cuda(model):
    """What ``clipag.load(..., device="cuda")`` does to the weights (fp16, norms in fp32)."""
    convert_weights_to_lp(model.inner, dtype=torch.float16)
    return model


def _snapshot(model):
    return {name: (p.dtype, p.data_ptr(), p.clone()) for name, p in model.named_parameters()}


def _watch(model):
    """Record, per forward of the image tower, its weight dtypes, the input dtype and the autocast state."""
    seen = []

    def hook(module, args):
        weights = {p.dtype for p in module.parameters()}
        autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        seen.append((weights, args[0].dtype, autocast))

    return seen, model.visual.register_forward_pre_hook(hook)


@pytest.mark.parametrize("precision, weights, want_weights, want_autocast", [
    ("fp32", "auto", {torch.float32}, None),
    ("auto", "auto", {torch.float32}, None),  # the CPU: fp32
    ("bf16", "auto", {torch.bfloat16}, torch.bfloat16),
    ("fp16", "auto", {torch.float16, torch.float32}, torch.float16),  # as loaded: fp16, norms in fp32
    ("bf16", "fp32", {torch.float32}, torch.bfloat16),
])
def test_encoder_dtypes_on_a_model_as_load_returns_it(tiny_clip, precision, weights, want_weights, want_autocast):
    model = _as_loaded_on_cuda(tiny_clip[0])
    before = _snapshot(model)
    seen, handle = _watch(model)
    try:
        result = generate_tensor("a red circle", model, preset="none", progress=False, precision=precision,
                                 weights=weights, **PLAIN)
    finally:
        handle.remove()
    assert seen, "the image tower never ran"
    assert all(w == want_weights and autocast == want_autocast for w, _, autocast in seen), seen
    assert torch.isfinite(result.loss).all() and result.images.dtype == torch.float32
    # the resolved settings name what ran
    assert result.config.precision == accel.dtype_name(want_autocast)
    assert result.config.weights == accel.dtype_name(min(want_weights, key=lambda d: d.itemsize))
    # the caller's model: same dtypes, same storage, same values
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for name, (dtype, ptr, value) in before.items():
        assert after[name][0] == dtype and after[name][1] == ptr and torch.equal(after[name][2], value), name


def test_fp32_run_of_an_fp16_model_is_close_to_the_fp32_model(tiny_clip, tiny_model_dir):
    import clipag

    reference = clipag.load(str(tiny_model_dir), device="cpu")[0]
    half = _as_loaded_on_cuda(tiny_clip[0])
    runs = [generate_tensor("a red circle", m, preset="none", progress=False, precision="fp32", **PLAIN)
            for m in (reference, half)]
    # the copy is fp32 again: only the fp16 rounding of the stored weights separates the runs
    assert (runs[0].cosine - runs[1].cosine).abs().max() < 0.02


def test_text_tower_is_shared_not_copied(tiny_clip):
    from clipag_plugin.synthesis.encoder import run_model

    model = _as_loaded_on_cuda(tiny_clip[0])
    twin = run_model(model, torch.float32, torch.device("cpu"))
    assert twin is not model and twin.dtype == torch.float32 and model.dtype == torch.float16
    assert twin.inner.token_embedding.weight is model.inner.token_embedding.weight
    assert run_model(twin, torch.float32, torch.device("cpu")) is twin  # nothing left to convert
    assert run_model(model, torch.float16, torch.device("cpu")) is model  # fp16 with fp32 norms is fp16


def test_weights_must_be_fp32_or_the_compute_dtype():
    assert accel.weight_dtype("auto", None) is torch.float32
    assert accel.weight_dtype("auto", torch.bfloat16) is torch.bfloat16
    assert accel.weight_dtype("fp32", torch.float16) is torch.float32
    with pytest.raises(ValueError, match="does not fit compute precision fp32.*weights=auto, fp32 or fp32"):
        accel.weight_dtype("fp16", None)
    with pytest.raises(ValueError, match="weights='int8': choose one of auto, fp32, bf16, fp16"):
        GenerateConfig(weights="int8")


@pytest.mark.parametrize("capability, expected", [
    ((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16), ((7, 5), torch.float16), ((7, 0), torch.float16),
    ((6, 1), None),
])
def test_auto_precision_follows_the_compute_capability_of_the_device_in_use(monkeypatch, capability, expected):
    asked = []

    def get_device_capability(index=None):
        asked.append(index)
        return capability if index == 1 else (9, 0)  # device 0 is newer: it must not be the one asked

    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation must not count
    assert accel.autocast_dtype("auto", torch.device("cuda:1")) is expected
    assert asked == [1]
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert accel.autocast_dtype("auto", torch.device("cuda")) is expected
    assert accel.autocast_dtype("auto", torch.device("cpu")) is None


def test_loss_scale_skips_overflowed_steps_and_grows_back():
    scale = accel.LossScale(True, init_scale=8.0, growth_interval=2)
    assert float(scale.scaled(torch.tensor(1.0))) == 8.0
    assert scale.unscale((torch.tensor([float("inf")]),)) is None and scale.scale == 4.0 and scale.skipped == 1
    grads = scale.unscale((torch.tensor([4.0]), torch.tensor([8.0])))
    assert [float(g) for g in grads] == [1.0, 2.0]
    scale.unscale((torch.tensor([1.0]),))
    assert scale.scale == 8.0  # two clean steps: doubled
    off = accel.LossScale(False)
    assert off.unscale((torch.tensor([float("inf")]),))[0].isinf().all() and off.scale == 1.0


def test_fp16_run_scales_the_loss_and_skips_overflowing_steps(tiny_clip, monkeypatch):
    model = tiny_clip[0]
    guides = load_guides([model], [Prompt("a red circle")], device="cpu")
    init = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    scales = []

    class Recording(accel.LossScale):
        def __init__(self, enabled, **kwargs):
            super().__init__(enabled, init_scale=2.0**100)  # overflows fp16 in the backward, every time
            scales.append(self)

    monkeypatch.setattr(loop, "LossScale", Recording)
    result = optimize(init, guides, GenerateConfig(precision="fp16", **PLAIN), [torch.Generator()])
    assert scales[0].enabled and scales[0].skipped == 3 and scales[0].scale == 2.0**97
    torch.testing.assert_close(result.images, init)  # every step was skipped: the image did not move
    fp32 = optimize(init, guides, GenerateConfig(precision="bf16", **PLAIN), [torch.Generator()])
    assert not scales[1].enabled and not torch.equal(fp32.images, init)


def test_generation_leaves_the_callers_tower_alone(tiny_rn_clip):
    """No channels-last conversion and no attribute written onto the model the caller passed."""
    import open_clip

    model = tiny_rn_clip[0]
    attributes = set(vars(model.visual))
    formats = [m.weight.is_contiguous() for m in model.visual.modules() if isinstance(m, torch.nn.Conv2d)]
    generate_tensor("a red circle", model, preset="none", progress=False, precision="bf16", **PLAIN)
    assert set(vars(model.visual)) == attributes
    assert [m.weight.is_contiguous() for m in model.visual.modules() if isinstance(m, torch.nn.Conv2d)] == formats
    plain = open_clip.model.CLIP(**__import__("json").loads(__import__("json").dumps(
        __import__("tests.conftest", fromlist=["TINY_CFG"]).TINY_CFG))).eval()
    before = set(vars(plain.visual))
    generate_tensor("a red circle", plain, preset="none", progress=False, **PLAIN)
    assert set(vars(plain.visual)) == before  # an open_clip model gets no input_resolution written onto it


def test_channels_last_copy_on_cuda_only(tiny_rn_clip):
    from clipag_plugin.synthesis.encoder import run_model, wants_channels_last

    model = tiny_rn_clip[0]
    assert wants_channels_last(model, torch.device("cuda")) and not wants_channels_last(model, torch.device("cpu"))
    assert run_model(model, torch.float32, torch.device("cpu")) is model


def test_a_loaded_registry_model_gets_its_names_preset():
    import clipag
    from clipag_plugin.synthesis.presets import preset_of_model, resolve_config

    loaded = clipag.load("mini", device="cpu")
    assert preset_of_model(loaded[0]).name == preset_of_model("mini").name == "mini"
    assert preset_of_model(loaded).name == "mini"
    by_name, _ = resolve_config(["mini"])
    by_model, _ = resolve_config([loaded[0]])
    assert by_model == by_name
