"""Caption retrieval of the mini models, clean and under PGD-L2 (the table in docs/mini-world.md).

    python benchmarks/mini_retrieval.py [--models mini-vanilla mini] [--eps 0.5 1.0 2.0]

Nearest of the 600 caption embeddings. "clean (600)": one clean render of every caption;
"clean (300)" and the attacked columns: 300 seeded clean renders of random captions;
"training variation": the same 300 captions rendered with the training variation. The attack
(``mini.pag.attacked_retrieval``): 10 PGD steps of 2.5 * eps / 10, no random start, maximizing
the cross-entropy over all 600 captions.
"""

from __future__ import annotations

import argparse

import torch

import clipag
from clipag_plugin.mini import pag, pretrain, world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"], help="names or folders")
    parser.add_argument("--eps", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    every = torch.arange(600)
    clean600 = world.render_clean(every, seed=123)
    g = torch.Generator().manual_seed(2025)
    ids = torch.randint(0, 600, (300,), generator=g)
    clean = world.render(world.scenes_from_indices(ids, torch.Generator().manual_seed(11), world.CLEAN))
    varied = world.render(world.scenes_from_indices(ids, torch.Generator().manual_seed(11), world.TRAIN))
    print("| model | clean (600) | clean (300) | training variation | " + " | ".join(f"PGD eps {e}" for e in args.eps) + " |")
    for name in args.models:
        model, _ = clipag.load(name, device="cpu")
        model.requires_grad_(False)
        txt = pretrain.text_features(model.inner)
        row = [pretrain.retrieval_accuracy(model.inner, clean600, every, txt),
               pretrain.retrieval_accuracy(model.inner, clean, ids, txt),
               pretrain.retrieval_accuracy(model.inner, varied, ids, txt)]
        row += [pag.attacked_retrieval(model.inner, clean, ids, eps, txt=txt) for eps in args.eps]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
