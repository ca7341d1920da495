"""Speed settings of the generation loop, on the CPU: bf16 autocast (the code path a GPU runs in
bf16/fp16), compiled encoders and their announced fallback."""

from __future__ import annotations

import pytest  # noqa: E402  (grouped with the test helpers)
import torch

from clipag_plugin.guidance.prompts import Prompt
from clipag_plugin.synthesis import accel
from clipag_plugin.synthesis.api import load_guides
from clipag_plugin.synthesis.loop import GenerateConfig, optimize


def _run(model, **options):
    config = GenerateConfig(steps=6, views=1, crops=0, augment=False, init="noise", threshold=None, **options)
    guides = load_guides([model], [Prompt("a red circle")], device="cpu")
    init = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return optimize(init, guides, config, [torch.Generator().manual_seed(s) for s in (0, 1)])


def test_autocast_dtype_per_precision_and_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert accel.autocast_dtype("auto", cpu) is None and accel.autocast_dtype("fp32", cuda) is None
    assert accel.autocast_dtype("bf16", cpu) is torch.bfloat16 and accel.autocast_dtype("fp16", cpu) is torch.float16
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16, fp16"):
        accel.autocast_dtype("int8", cpu)
    with pytest.raises(ValueError, match="precision='fp8'"):
        GenerateConfig(precision="fp8")


def test_bf16_encoder_keeps_fp32_pixels_and_stays_close_to_fp32(tiny_clip):
    model, _ = tiny_clip
    seen = []
    encode = model.encode_pixels

    def spy(images):
        out = encode(images)
        seen.append((images.dtype, out.dtype, torch.is_autocast_enabled("cpu")))
        return out

    model.encode_pixels = spy
    try:
        bf16 = _run(model, precision="bf16")
        fp32 = _run(model, precision="fp32")
    finally:
        del model.encode_pixels
    assert all(autocast for _, _, autocast in seen[: len(seen) // 2])  # the bf16 run ran under autocast
    assert all(dtype == torch.bfloat16 for _, dtype, _ in seen[: len(seen) // 2])
    assert not any(autocast for _, _, autocast in seen[len(seen) // 2:])
    assert bf16.images.dtype == torch.float32 and torch.isfinite(bf16.loss).all()
    # the stated tolerance: cosine of the final image to the prompt within 0.02 of the fp32 run
    assert (bf16.cosine - fp32.cosine).abs().max() < 0.02


def test_compiled_encoder_matches_eager(tiny_clip, monkeypatch):
    monkeypatch.setattr(accel, "COMPILE_BACKEND", "aot_eager")  # the code path, without a C++ build
    torch._dynamo.reset()
    model, _ = tiny_clip
    compiled = _run(model, compile=True)
    eager = _run(model)
    torch.testing.assert_close(compiled.images, eager.images, atol=1e-4, rtol=0)


def test_compile_falls_back_to_eager_with_one_notice(tiny_clip, monkeypatch, caplog):
    def broken(*args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model, _ = tiny_clip
    result = _run(model, compile=True)
    eager = _run(model)
    torch.testing.assert_close(result.images, eager.images)
    notices = [r for r in caplog.records if "torch.compile is unavailable" in r.getMessage()]
    assert len(notices) == 1 and "no C++ compiler" in notices[0].getMessage()


def test_precision_and_compile_flags_reach_the_config():
    import argparse

    from clipag_plugin.cli.generate import add_generation_options, explicit_options

    parser = argparse.ArgumentParser()
    add_generation_options(parser)
    given = explicit_options(parser.parse_args(["--precision", "bf16", "--compile"]))
    assert given == {"precision": "bf16", "compile": True}
    assert explicit_options(parser.parse_args([])) == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_precision_on_cuda_is_reduced_and_close_to_fp32(tiny_model_dir):
    import clipag

    model, _ = clipag.load(str(tiny_model_dir), device="cuda")  # fp16 weights, as users get them
    assert model.dtype == torch.float16
    major, _ = torch.cuda.get_device_capability(torch.device("cuda"))
    expected = torch.bfloat16 if major >= 8 else torch.float16 if major >= 7 else None
    assert accel.autocast_dtype("auto", torch.device("cuda")) is expected
    guides = load_guides([model], [Prompt("a red circle")], device="cuda")
    init = torch.rand(2, 3, 32, 32, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    results = {}
    for precision in ("auto", "fp32"):
        config = GenerateConfig(steps=6, views=1, crops=0, augment=False, init="noise", threshold=None,
                                precision=precision)
        results[precision] = optimize(init, guides, config, [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert results["fp32"].config.weights == "fp32"
    assert results["auto"].config.precision == accel.dtype_name(expected)
    assert model.dtype == torch.float16  # the loaded model is unchanged
    assert (results["auto"].cosine - results["fp32"].cosine).abs().max() < 0.02


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_encoder_on_cuda_matches_eager(tiny_model_dir):
    import clipag

    torch._dynamo.reset()
    model, _ = clipag.load(str(tiny_model_dir), device="cuda")
    guides = load_guides([model], [Prompt("a red circle")], device="cuda")
    init = torch.rand(1, 3, 32, 32, device="cuda")
    config = GenerateConfig(steps=3, views=1, crops=0, augment=False, init="noise", threshold=None, precision="fp32")
    eager = optimize(init, guides, config, [torch.Generator()])
    compiled = optimize(init, guides, GenerateConfig(**{**config.__dict__, "compile": True}), [torch.Generator()])
    torch.testing.assert_close(compiled.images, eager.images, atol=1e-3, rtol=0)


def _backend(fw=None, bw=None):
    """A torch.compile backend (AOT autograd, graphs run as traced) whose forward or backward compiler fails."""
    from torch._dynamo.backends.common import aot_autograd

    def compiler(fail):
        def compile_graph(graph, example_inputs):
            if fail is not None:
                raise fail
            return graph
        return compile_graph

    return aot_autograd(fw_compiler=compiler(fw), bw_compiler=compiler(bw))


def test_compile_failing_in_the_backward_falls_back_before_the_loop_needs_it(tiny_clip, monkeypatch, caplog):
    torch._dynamo.reset()
    monkeypatch.setattr(accel, "COMPILE_BACKEND", _backend(bw=RuntimeError("backward codegen failed")))
    model, _ = tiny_clip
    result = _run(model, compile=True)
    eager = _run(model)
    torch.testing.assert_close(result.images, eager.images)
    notices = [r.getMessage() for r in caplog.records if "torch.compile is unavailable" in r.getMessage()]
    assert len(notices) == 1 and "backward codegen failed" in notices[0]


def test_compile_out_of_memory_is_raised_not_hidden(tiny_clip, monkeypatch, caplog):
    torch._dynamo.reset()
    monkeypatch.setattr(accel, "COMPILE_BACKEND",
                        _backend(fw=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))
    model, _ = tiny_clip
    with pytest.raises(Exception) as raised:
        _run(model, compile=True)
    assert accel.is_out_of_memory(raised.value)
    assert not any("torch.compile is unavailable" in r.getMessage() for r in caplog.records)


def test_compile_does_not_mistake_a_model_error_for_the_compilers(monkeypatch, caplog):
    torch._dynamo.reset()
    monkeypatch.setattr(accel, "COMPILE_BACKEND", "aot_eager")

    def encode(images):
        if images.shape[0] > 1:
            raise ValueError("the model's own shape bug")
        return images.flatten(1)

    wrapped = accel.CompiledEncoder(encode, "buggy")
    assert wrapped(torch.rand(1, 3, 4, 4, requires_grad=True)).shape == (1, 48)
    with pytest.raises(ValueError, match="the model's own shape bug"):
        wrapped(torch.rand(2, 3, 4, 4, requires_grad=True))
    assert wrapped.compiled is not None and not wrapped.failed
    assert not any("torch.compile is unavailable" in r.getMessage() for r in caplog.records)
