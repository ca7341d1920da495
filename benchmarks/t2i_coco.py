"""Generator-free text-to-image, scored the way the field reports it: the protocol in one place.

    # the full-size protocol (a GPU, the weights downloaded, COCO on disk)
    python benchmarks/t2i_coco.py coco --annotations captions_val2014.json --images val2014/ \\
        --models ViT-B/32 openai-ViT-B/32 --out runs/coco --device cuda
    # the same harness on the mini world, offline on a CPU
    python benchmarks/t2i_coco.py mini --captions 32 --out runs/mini

The protocol (``coco``):

- captions: MS-COCO 2014 validation (``captions_val2014.json``); one caption per image, the one
  with the lowest annotation id; the images in a fixed order (``random.Random(0).shuffle`` of the
  sorted image ids), the first ``--captions`` (10,000, as the generator-free papers report);
- seeds: one picture per caption, seed ``clipag_plugin.synthesis.batch.caption_seed(image_id, 0)``;
- generation: ``clipag generate --prompts ... --out-dir ...`` with each model's own preset
  (``--param`` pixels or multires), nothing else changed;
- pictures for the metrics: the generated ones as they are; the reference set: the same images'
  COCO photos, centre-cropped to a square and resized (bicubic) to 256 px;
- FID and KID: torchmetrics on torch-fidelity's port of the TF Inception-v3 of 2015-12-05 (2048-d
  pool features; ``clipag download inception``), KID subsets of 1000; IS: the same network's
  logits, 10 splits;
- CLIP score: ``100 * max(cos, 0)`` with OpenAI's plain ViT-B/32 (``openai-ViT-B/32``), a model that
  painted none of the pictures.

``mini`` runs the same harness on the mini world (captions ``mini.pag.seeded_prompts(n, 2024)``):
``mini`` against ``mini-vanilla``, pixels against multires; its numbers are the world judge's
readings, FID in the judge's feature space against clean renders of the same captions, and the
CLIP score of each picture by the mini model that did not paint it. Printed: a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from clipag_plugin.scoring.metrics import PictureScores
from clipag_plugin.synthesis.batch import Caption, Manifest, generate_batch


def coco_captions(annotations: Path, n: int) -> list[Caption]:
    """The protocol's captions: one per image (lowest annotation id), a fixed shuffle, the first ``n``."""
    data = json.loads(annotations.read_text())
    first: dict[int, tuple[int, str]] = {}
    for a in data["annotations"]:
        if a["image_id"] not in first or a["id"] < first[a["image_id"]][0]:
            first[a["image_id"]] = (a["id"], a["caption"])
    ids = sorted(first)
    random.Random(0).shuffle(ids)
    return [Caption(str(i), " ".join(first[i][1].split())) for i in ids[:n]]


def coco_reference(images: Path, captions: list[Caption], size: int = 256, chunk: int = 256):
    """The COCO photos of the captions, centre-cropped square and resized to ``size`` px, in [0, 1],
    in chunks of ``chunk`` (10,000 photos need not fit in memory)."""
    import numpy as np
    from PIL import Image

    for start in range(0, len(captions), chunk):
        out = []
        for caption in captions[start:start + chunk]:
            with Image.open(images / f"COCO_val2014_{int(caption.id):012d}.jpg") as photo:
                photo = photo.convert("RGB")
                side = min(photo.size)
                left, top = (photo.width - side) // 2, (photo.height - side) // 2
                photo = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
                out.append(np.asarray(photo, dtype=np.float32) / 255)
        yield torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def score_run(out: Path, label: str, scores: PictureScores, chunk: int = 256) -> dict:
    """Feed one model's pictures of a batch run to ``scores`` in chunks; its numbers."""
    import numpy as np
    from PIL import Image

    records = sorted((r for r in Manifest(out).records() if r["model"] == label), key=lambda r: r["id"])
    scores.reset()
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        arrays = [np.asarray(Image.open(out / r["file"]).convert("RGB"), dtype=np.float32) / 255 for r in part]
        scores.update(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2), [r["caption"] for r in part])
    return scores.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", choices=("coco", "mini"))
    parser.add_argument("--captions", type=int, default=None, help="how many (coco: 10000, mini: 32)")
    parser.add_argument("--annotations", type=Path, help="coco: captions_val2014.json")
    parser.add_argument("--images", type=Path, help="coco: the val2014 image folder")
    parser.add_argument("--models", nargs="+", default=None, help="coco: the models (default ViT-B/32)")
    parser.add_argument("--params", nargs="+", default=["pixels", "multires"])
    parser.add_argument("--scorer", default="openai-ViT-B/32", help="coco: the CLIP score's model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="override the presets' steps (quick looks only)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import clipag

    extra = {"steps": args.steps} if args.steps else {}
    if args.world == "mini":
        from clipag_plugin.mini import pag

        prompts = pag.seeded_prompts(args.captions or 32, seed=2024)[0]
        captions = [Caption(f"{i:04d}", p) for i, p in enumerate(prompts)]
        models = ["mini", "mini-vanilla"]
        # each model's pictures are CLIP-scored by the mini model that did not paint them
        scorers = {name: PictureScores(clipag.load(other, device="cpu")[0], judge=True)
                   for name, other in (("mini", "mini-vanilla"), ("mini-vanilla", "mini"))}
    else:
        if not (args.annotations and args.images):
            raise SystemExit("coco needs --annotations captions_val2014.json and --images val2014/")
        captions = coco_captions(args.annotations, args.captions or 10_000)
        models = args.models or ["ViT-B/32"]
        from clipag_plugin.scoring.inception import inception_path

        scores = PictureScores(clipag.load(args.scorer, device=args.device or "cpu")[0], inception=inception_path())
        for chunk in coco_reference(args.images, captions):
            scores.add_reference(chunk)
        scorers = {name: scores for name in models}
    print("| model | param | " + ("colour+shape | all four | judge conf | judge FID | CLIP score (other mini)"
                                  if args.world == "mini" else "FID | KID | IS | CLIP score") + " | s/picture |")
    print("|---|---|" + "---|" * (6 if args.world == "mini" else 5))
    for param in args.params:
        out = args.out / param
        for name in models:
            start = time.perf_counter()
            summary = generate_batch(captions, name, out, batch_size=args.batch, device=args.device, param=param,
                                     **extra)
            seconds = (time.perf_counter() - start) / max(1, summary.made) if summary.made else float("nan")
            n = score_run(out, summary.folder.name, scorers[name])
            keys = (("colour+shape", "all", "confidence", "judge_fid", "clip_score") if args.world == "mini"
                    else ("fid", "kid", "is", "clip_score"))
            print(f"| {name} | {param} | " + " | ".join(f"{n[k]:.2f}" if abs(n[k]) >= 0.01 or n[k] == 0
                                                      else f"{n[k]:.4f}" for k in keys) + f" | {seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
