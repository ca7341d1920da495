"""The trade adversarial fine-tuning makes, in seconds on a CPU: clean vs robust retrieval.

    python benchmarks/train_sanity.py [--pairs 48] [--steps 150] [--eps 0.5]

A tiny random ViT CLIP (32 px, text tower frozen at its random init) is first aligned on
``--pairs`` mini-world pictures and their captions for ``--steps`` clean steps, then trained
``--steps`` more, once clean and once adversarially (L2 ``--eps``, PGD-3, random start). Each
row reports image->text R@1 on the same pairs, clean and under PGD-10 at the same radius.
Everything goes through ``clipag_plugin.train.finetune`` and ``retrieval_accuracy``.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

TINY_VIT = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_model(folder: Path):
    """A random tiny ViT CLIP written in open_clip layout and read back through ``clipag.load``."""
    import json

    from open_clip.model import CLIP
    from safetensors.torch import save_file

    import clipag

    torch.manual_seed(0)
    model = CLIP(**TINY_VIT)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_VIT}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return clipag.load(str(folder), device="cpu")[0]


def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct mini-world captions (seeded) with their clean pictures at 32 px."""
    import clipag
    from clipag_plugin.mini import world

    ids = torch.randperm(len(world.all_captions()), generator=torch.Generator().manual_seed(0))[:n]
    images = F.interpolate(world.render_clean(ids), size=32, mode="bilinear", antialias=True, align_corners=False)
    tokens = clipag.tokenize([world.all_captions()[i] for i in ids.tolist()])
    return images.clamp(0, 1), tokens


def train(model, images, tokens, steps: int, lr: float, eps: float, adversarial: bool):
    """``steps`` optimizer steps of the trainer on the fixed pairs; returns the model and seconds."""
    from clipag_plugin.train import FinetuneConfig, finetune

    config = FinetuneConfig(steps=steps, batch_size=16, accum_steps=1, lr=lr, warmup_steps=0, weight_decay=0.0,
                            pgd_steps=3 if adversarial else 0, eps=eps, random_start=True, device="cpu",
                            log_every=10**9, checkpoint_every=0)
    batches = [(images[i : i + 16], tokens[i : i + 16]) for i in range(0, len(images), 16)]
    start = time.process_time()
    finetune(model, batches, config, progress=False, export=False)
    return model, time.process_time() - start


def scores(model, images, tokens, eps: float) -> tuple[float, float]:
    from clipag_plugin.train import AttackConfig, retrieval_accuracy

    clean = retrieval_accuracy(model, images, tokens, ks=(1,))["image_to_text_r1"]
    attack = AttackConfig(norm="l2", eps=eps, steps=10)
    robust = retrieval_accuracy(model, images, tokens, attack=attack, ks=(1,))["image_to_text_r1"]
    return clean, robust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, tokens = pairs(args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        base, seconds = train(tiny_model(Path(tmp) / "tiny"), images, tokens, args.steps, args.lr, args.eps, False)
    rows = [(f"{args.steps} clean steps", base, seconds)]
    for label, adversarial in ((f"+ {args.steps} clean steps", False), (f"+ {args.steps} adversarial steps", True)):
        model, seconds = train(copy.deepcopy(base), images, tokens, args.steps, args.lr, args.eps, adversarial)
        rows.append((label, model, seconds))
    print(f"{args.pairs} pairs, image->text R@1, clean / under PGD-10 L2 eps {args.eps}:\n")
    print("| model | clean R@1 | robust R@1 | CPU s |")
    print("|---|---|---|---|")
    for label, model, seconds in rows:
        clean, robust = scores(model, images, tokens, args.eps)
        print(f"| {label} | {clean:.2f} | {robust:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
