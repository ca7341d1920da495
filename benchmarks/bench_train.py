"""Fine-tuning step time vs the bare forward+backward of the same model and batch, side by side.

    python benchmarks/bench_train.py                      # ViT-B-32 (random init), batch 8, PGD-3, CPU
    python benchmarks/bench_train.py --model tiny --batch 32
    python benchmarks/bench_train.py --device cuda --batch 256   # adds images/s and model FLOP utilization

*bare*: image forward (with grad) + contrastive loss against precomputed caption features + backward.
*train*: one micro-batch of ``clipag finetune``: caption encoding (frozen tower), PGD with
``--pgd-steps`` steps, forward and backward on the perturbed images. Runs alternate (bare, train,
bare, train, ...) so that machine noise hits both; medians are reported.
Target (issue 3): train <= 1.15 x (pgd_steps + 1) x bare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
}


def build(model_name: str, device: str):
    import open_clip

    from clipag_plugin.model import ClipagModel
    from clipag_plugin.preprocess import OPENAI_MEAN, OPENAI_STD

    torch.manual_seed(0)
    if model_name == "tiny":
        from open_clip.model import CLIP

        inner = CLIP(**TINY)
    else:
        inner = open_clip.create_model(model_name, pretrained=None)
    size = inner.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return ClipagModel(inner.float(), size, OPENAI_MEAN, OPENAI_STD, name=model_name).to(device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(device: str, dtype=torch.bfloat16, n: int = 8192, reps: int = 20) -> float:
    """Measured dense matmul FLOP/s of the card (bf16), the MFU denominator."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random init) or 'tiny'")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from clipag_plugin.tokenizer import tokenize
    from clipag_plugin.train import dist
    from clipag_plugin.train.config import FinetuneConfig
    from clipag_plugin.train.loop import freeze_text_tower
    from clipag_plugin.train.objective import clip_logit_scale, contrastive_loss
    from clipag_plugin.train.step import _autocast, _encode, _micro_step

    device = torch.device(args.device)
    model = build(args.model, args.device)
    freeze_text_tower(model)
    model.visual.train()
    res = model.visual.input_resolution
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, res, res, generator=g).to(device)
    tokens = tokenize([f"a photo of object number {i}" for i in range(args.batch)]).to(device)
    config = FinetuneConfig(pgd_steps=args.pgd_steps, random_start=True, batch_size=args.batch)
    d = dist.info()
    with torch.no_grad(), _autocast(device, config):
        text = model.encode_text(tokens).float()
    scale = clip_logit_scale(model.logit_scale)

    def bare() -> None:
        with _autocast(device, config):
            feats = _encode(model.visual, model, images).float()
        contrastive_loss(feats, text, scale).backward()
        model.visual.zero_grad(set_to_none=True)

    def train() -> None:
        losses = _micro_step(model, model.visual, None, images, tokens, config, d, 0, device)
        losses["backward"].backward()
        model.visual.zero_grad(set_to_none=True)

    def timed(fn) -> float:
        _sync(args.device)
        t = time.perf_counter()
        fn()
        _sync(args.device)
        return time.perf_counter() - t

    bare(), train()  # warm up
    bare_t, train_t = [], []
    for _ in range(args.reps):
        bare_t.append(timed(bare))
        train_t.append(timed(train))
    tb, tt = statistics.median(bare_t), statistics.median(train_t)
    bound = (args.pgd_steps + 1) * tb
    result = {
        "model": args.model, "device": args.device, "batch": args.batch, "pgd_steps": args.pgd_steps,
        "threads": args.threads, "bare_s": tb, "train_s": tt, "ratio_to_bound": tt / bound,
        "train_over_bare": tt / tb, "images_per_s": args.batch / tt,
    }
    if args.device.startswith("cuda"):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            train()
        peak = matmul_rate(args.device)
        result |= {"train_flops": counter.get_total_flops(), "bf16_matmul_flops_per_s": peak,
                   "mfu": counter.get_total_flops() / tt / peak}
    print(f"{args.model} batch {args.batch} PGD-{args.pgd_steps} on {args.device} ({args.threads} threads)")
    print(f"  bare forward+backward : {tb * 1000:9.1f} ms")
    print(f"  fine-tuning micro-step: {tt * 1000:9.1f} ms  = {tt / tb:.2f} x bare")
    print(f"  ratio to (steps+1) x bare: {tt / bound:.3f}  (target <= 1.15)")
    if "mfu" in result:
        print(f"  images/s {result['images_per_s']:.1f}, MFU {100 * result['mfu']:.1f}% of measured bf16 matmul rate")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
