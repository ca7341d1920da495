"""One prepared GPU check: everything the package does on a GPU, timed, in one run of a few minutes.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json      # on a GPU (about 5 minutes)
    python benchmarks/gpu_check.py --quick --device cpu                    # tiny models, seconds (the test suite runs this)

No network: the models are random-initialized full-size architectures from open_clip's configs
(ViT-B/32, and ViT-L/14 for the load check), the f16 VQGAN config, the CLIPDraw scene of the
notebook. Sections, each timed after a warm-up and reported as one table row (failures are
recorded, the check goes on):

* ``load``: ``clipag.load`` on the device (fp16 weights on CUDA, as OpenAI's), the cosine of its
  image features to an fp32 reference on the same inputs;
* ``generate``: 100 steps of the plain setting (one view) and of the notebook recipe (32 views +
  32 crops) on the model as ``clipag.load`` returns it, at precision fp32, auto, bf16 with fp32
  weights and compiled auto (each row names the compute and weight dtypes that ran): seconds per
  image and peak memory; a row fails when the loaded model changed;
* ``finetune``: PGD-3 adversarial fine-tuning steps at batch 256 in bf16: images/s and model FLOP
  utilization against ``--peak-tflops`` (default: the GPU's bf16 dense peak when known);
* ``clipdraw`` and ``vqgan``: one step of each app with its tricks on and off on the loaded model,
  and one CLIPDraw notebook step through the pydiffvg interface (``clipag run clipdraw``'s path);
* ``tests``: the ``gpu``-marked tests (``pytest -m gpu``), on CUDA only.

``--quick`` swaps in tiny models and a few steps so that the check itself stays runnable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY_VIT = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# bf16 dense peak TFLOP/s by device name (vendor figures), for the utilization column
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _model_folder(root: Path, arch, seed: int = 0) -> Path:
    """A random open_clip model written in open_clip layout (config + safetensors)."""
    import open_clip
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    if isinstance(arch, dict):
        model, cfg = CLIP(**arch), arch
    else:
        model, cfg = open_clip.create_model(arch, pretrained=None), open_clip.get_model_config(arch)
    folder = root / (arch if isinstance(arch, str) else "tiny")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def check_load(root: Path, device: torch.device, quick: bool) -> list[dict]:
    import clipag

    rows = []
    for arch in ([TINY_VIT] if quick else ["ViT-B-32", "ViT-L-14"]):
        folder = _model_folder(root, arch)
        reference, _ = clipag.load(str(folder), device="cpu")
        start = time.perf_counter()
        model, _ = clipag.load(str(folder), device=str(device))
        _sync(device)
        seconds = time.perf_counter() - start
        size = model.visual.input_resolution
        images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ours = model.encode_image(images.to(device)).float().cpu()
            ref = reference.encode_image(images).float()
        cosine = float(torch.nn.functional.cosine_similarity(ours, ref).min())
        rows.append({"section": "load", "case": f"{'tiny ViT' if quick else arch}, weights {model.dtype}",
                     "seconds": seconds, "min cosine to fp32": cosine, "ok": cosine > 0.99})
    return rows


def check_generate(root: Path, device: torch.device, quick: bool) -> list[dict]:
    """Generation on the model exactly as ``clipag.load`` returns it (fp16 weights on CUDA)."""
    import clipag
    from clipag_plugin.guidance.prompts import Prompt
    from clipag_plugin.synthesis import accel
    from clipag_plugin.synthesis.api import load_guides
    from clipag_plugin.synthesis.loop import GenerateConfig, optimize

    folder = _model_folder(root, TINY_VIT if quick else "ViT-B-32")
    model, _ = clipag.load(str(folder), device=str(device))
    loaded_dtype = model.dtype
    guides = load_guides([model], [Prompt("a watercolor of a fox")], device=str(device))
    steps = 3 if quick else 100
    recipe = dict(views=2, crops=2) if quick else dict(views=32, crops=32)
    settings = {"plain": dict(views=1, crops=0, augment=False), "recipe": recipe}
    modes = {"fp32": dict(precision="fp32"), "auto": dict(precision="auto"),
             "bf16, fp32 weights": dict(precision="bf16", weights="fp32"),
             "compiled auto": dict(precision="auto", compile=True)}
    if quick:
        accel.COMPILE_BACKEND = "aot_eager"  # the compile path without a C++ build
    size = guides[0].resolution
    rows = []
    for setting, options in settings.items():
        for mode, extra in modes.items():
            config = GenerateConfig(steps=steps, init="noise", **options, **extra)
            init = torch.rand(1, 3, size, size, device=device)
            _reset_memory(device)
            ran = {}
            try:
                def step(config=config, init=init, ran=ran):
                    ran["result"] = optimize(init, guides, config, [torch.Generator()])

                seconds = _timed(step, device, 1)
                used = ran["result"].config
                unchanged = model.dtype == loaded_dtype
                rows.append({"section": "generate",
                             "case": f"{setting}, {mode} ({used.precision} compute, {used.weights} weights; "
                                     f"loaded {str(loaded_dtype).replace('torch.', '')}), {steps} steps",
                             "seconds": seconds, "peak MiB": _peak_memory(device),
                             "ok": unchanged and bool(torch.isfinite(ran["result"].loss).all())})
            except Exception as err:  # noqa: BLE001 - report and go on
                rows.append({"section": "generate", "case": f"{setting}, {mode}", "ok": False, "error": repr(err)})
    return rows


def check_finetune(root: Path, device: torch.device, quick: bool, peak_tflops: float | None) -> list[dict]:
    import clipag
    from clipag_plugin.train import FinetuneConfig, finetune

    folder = _model_folder(root, TINY_VIT if quick else "ViT-B-32")
    model, _ = clipag.load(str(folder), device="cpu")
    batch = 4 if quick else 256
    size = model.visual.input_resolution
    data = [(torch.rand(batch, 3, size, size), clipag.tokenize(["a photo"] * batch))]
    steps = 2 if quick else 6
    config = FinetuneConfig(steps=steps + 1, batch_size=batch, accum_steps=1, pgd_steps=3, warmup_steps=0,
                            precision="bf16" if device.type == "cuda" else "fp32", device=str(device),
                            log_every=10**9, checkpoint_every=0, num_workers=0)
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            finetune(model, data, FinetuneConfig(**{**config.__dict__, "steps": 1}), progress=False, export=False)
        flops = counter.get_total_flops()
    except Exception:  # noqa: BLE001 - the utilization column stays empty
        pass
    start = time.perf_counter()
    finetune(model, data, config, progress=False, export=False)
    _sync(device)
    seconds = (time.perf_counter() - start) / config.steps
    row = {"section": "finetune", "case": f"{'tiny ViT' if quick else 'ViT-B/32'}, batch {batch}, PGD-3, "
                                          f"{config.precision}", "seconds": seconds, "images/s": batch / seconds,
           "ok": True}
    if flops and peak_tflops:
        row["MFU"] = flops / seconds / (peak_tflops * 1e12)
    return [row]


def check_apps(root: Path, device: torch.device, quick: bool) -> list[dict]:
    import clipag
    from clipag_plugin.guidance.warp import clipdraw_warp
    from clipag_plugin.render import StrokeScene, render

    folder = _model_folder(root, TINY_VIT if quick else "ViT-B-32")
    model, _ = clipag.load(str(folder), device=str(device))  # as the apps get it: fp16 weights on CUDA
    size = model.visual.input_resolution
    text = torch.nn.functional.normalize(torch.randn(1, model.visual.output_dim, device=device), dim=-1)
    rows = []
    g = torch.Generator().manual_seed(0)
    paths = [(torch.rand(4, 2, generator=g) * 224).to(device).requires_grad_() for _ in range(16 if quick else 256)]
    widths = [torch.tensor(1.0, device=device).requires_grad_() for _ in paths]
    colors = [torch.rand(4, generator=g).to(device).requires_grad_() for _ in paths]
    for tricks in ("on", "off"):
        def clipdraw_step(tricks=tricks):
            image = render(StrokeScene.from_paths(paths, widths, colors, 224, 224), backend="torch").unsqueeze(0)
            batch = clipdraw_warp(image, 4, size, g) if tricks == "on" else torch.nn.functional.interpolate(
                image, size=(size, size), mode="bilinear", antialias=True)
            loss = -torch.cosine_similarity(model.encode_pixels(batch).float(), text).sum()
            loss.backward()

        rows.append({"section": "clipdraw", "case": f"one step, tricks {tricks}",
                     "seconds": _timed(clipdraw_step, device, 2 if quick else 5), "ok": True})
    rows.append(_pydiffvg_step(model, text, device, 16 if quick else 256, size, 2 if quick else 5))
    try:
        from clipag_plugin.guidance.cutouts import Cutouts
        from clipag_plugin.vqgan import TINY_CONFIG, VqganConfig, build_vqmodel
        from clipag_plugin.vqgan.quantize import random_code_latents, synth

        config = TINY_CONFIG if quick else VqganConfig(n_embed=16384, embed_dim=256, ddconfig={
            "double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
            "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0})
        vqgan = build_vqmodel(config).to(device)
        side = 64 if quick else 256
        f = 2 ** (len(config.ddconfig["ch_mult"]) - 1)
        for tricks in ("on", "off"):
            cutouts = Cutouts(size, 8 if quick else 32, mode="latest" if tricks == "on" else "none")
            z = random_code_latents(vqgan, side // f, side // f).to(device).requires_grad_()

            def vqgan_step(cutouts=cutouts, z=z):
                views = cutouts(synth(vqgan, z), generator=g)
                loss = -torch.cosine_similarity(model.encode_pixels(views).float(), text).sum()
                loss.backward()

            rows.append({"section": "vqgan", "case": f"one step, {side} px, tricks {tricks}",
                         "seconds": _timed(vqgan_step, device, 2 if quick else 5), "ok": True})
    except ImportError as err:
        rows.append({"section": "vqgan", "case": "skipped", "ok": True, "error": f"taming not installed ({err})"})
    return rows


def _pydiffvg_step(model, text: torch.Tensor, device: torch.device, n_paths: int, size: int, repeats: int) -> dict:
    """One CLIPDraw notebook step through clipag's pydiffvg interface (what ``clipag run clipdraw`` uses):
    parameters on the CPU as the notebook keeps them, rendering and compositing on the device."""
    from clipag_plugin.render import pydiffvg_compat as pydiffvg

    pydiffvg.set_device(device)
    g = torch.Generator().manual_seed(1)
    shapes, groups = [], []
    for i in range(n_paths):
        start = torch.rand(1, 2, generator=g) * 224
        points = torch.cat([start, start + torch.cumsum((torch.rand(3, 2, generator=g) - 0.5) * 20, 0)])
        shapes.append(pydiffvg.Path(num_control_points=torch.tensor([2]), points=points.requires_grad_(),
                                    stroke_width=torch.tensor(1.0).requires_grad_(), is_closed=False))
        groups.append(pydiffvg.ShapeGroup(shape_ids=torch.tensor([i]), fill_color=None,
                                          stroke_color=torch.rand(4, generator=g).requires_grad_()))

    def step() -> None:
        scene = pydiffvg.RenderFunction.serialize_scene(224, 224, shapes, groups)
        img = pydiffvg.RenderFunction.apply(224, 224, 2, 2, 0, None, *scene)
        img = img[:, :, 3:4] * img[:, :, :3] + torch.ones(224, 224, 3, device=pydiffvg.get_device()) * (
            1 - img[:, :, 3:4])
        batch = torch.nn.functional.interpolate(img.permute(2, 0, 1).unsqueeze(0), size=(size, size),
                                                mode="bilinear", antialias=True)
        loss = -torch.cosine_similarity(model.encode_pixels(batch).float(), text).sum()
        loss.backward()

    try:
        seconds = _timed(step, device, repeats)
        reached = shapes[0].points.grad is not None and bool(torch.isfinite(shapes[0].points.grad).all())
        return {"section": "clipdraw", "case": f"one step through the pydiffvg interface, {n_paths} paths, tricks off",
                "seconds": seconds, "ok": reached}
    except Exception as err:  # noqa: BLE001 - report and go on
        return {"section": "clipdraw", "case": "one step through the pydiffvg interface", "ok": False,
                "error": repr(err)}


def run_gpu_tests(device: torch.device, quick: bool) -> list[dict]:
    if device.type != "cuda" or quick:
        return [{"section": "tests", "case": "gpu-marked tests: need CUDA (skipped)", "ok": True}]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return [{"section": "tests", "case": f"pytest -m gpu: {tail}", "seconds": time.perf_counter() - start,
             "ok": done.returncode == 0}]


def _cell(row: dict) -> str:
    parts = []
    for key in ("seconds", "images/s", "MFU", "peak MiB", "min cosine to fp32"):
        value = row.get(key)
        if value is None:
            continue
        parts.append(f"{key} {value:.3g}" if key != "MFU" else f"MFU {100 * value:.1f} %")
    if row.get("error"):
        parts.append(row["error"][:120])
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and a few steps (seconds, any device)")
    parser.add_argument("--out", default="gpu_check.json", help="JSON report")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's bf16 dense peak, for the utilization (default: known GPUs' figures)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but this machine has no CUDA; use --device cpu (with --quick)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    report = {"device": name, "torch": torch.__version__, "quick": args.quick, "date": time.strftime("%Y-%m-%d"),
              "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for section in (lambda: check_load(root, device, args.quick), lambda: check_generate(root, device, args.quick),
                        lambda: check_finetune(root, device, args.quick, peak),
                        lambda: check_apps(root, device, args.quick), lambda: run_gpu_tests(device, args.quick)):
            try:
                report["rows"] += section()
            except Exception as err:  # noqa: BLE001 - one broken section must not hide the others
                report["rows"].append({"section": "?", "case": "section failed", "ok": False, "error": repr(err)})
    print(f"gpu_check on {name} (torch {torch.__version__}{', quick' if args.quick else ''})\n")
    print("| section | case | result | ok |\n|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['section']} | {row['case']} | {_cell(row)} | {'yes' if row['ok'] else 'NO'} |")
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
