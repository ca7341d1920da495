"""clipag.load from a warm cache vs open_clip's create_model_and_transforms on the same files.

Both read the same folder in open_clip layout (config JSON + safetensors); timings alternate
between the two loaders in one run, and the report is the ratio of medians.

    python benchmarks/bench_load.py [--repeats 5] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _make_folder(root: Path, name: str, model_cfg: dict | str) -> Path:
    import open_clip
    from safetensors.torch import save_file

    folder = root / name
    folder.mkdir()
    if isinstance(model_cfg, str):
        model_cfg = open_clip.get_model_config(model_cfg)
    model = open_clip.model.CLIP(**json.loads(json.dumps(model_cfg)))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true", help="only the tiny model")
    args = parser.parse_args()
    import open_clip

    import clipag

    tiny = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    cases = [("tiny", tiny)] + ([] if args.skip_large else [("ViT-B-32-shaped", "ViT-B-32")])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'model':<18} {'clipag.load':>12} {'open_clip':>12} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in cases:
            folder = _make_folder(Path(tmp), name, cfg)
            ours = lambda folder=folder: clipag.load(str(folder), device="cpu")  # noqa: E731
            theirs = lambda folder=folder: open_clip.create_model_and_transforms(f"local-dir:{folder}")  # noqa: E731
            ours(), theirs()  # warm the page cache and imports
            a, b = [], []
            for _ in range(args.repeats):  # interleave so that noise hits both alike
                a += _time(ours, 1)
                b += _time(theirs, 1)
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{name:<18} {ma * 1000:10.1f}ms {mb * 1000:10.1f}ms {ma / mb:6.2f}x")


if __name__ == "__main__":
    main()
