"""Rebuild every shipped mini-world file from scratch, seeded: ``python -m clipag_plugin.mini.build``.

1. the judge (``weights/judge.safetensors``), trained on widely varied renders;
2. ``mini-vanilla``: contrastive pretraining from scratch (:mod:`.pretrain`);
3. ``mini``: ``mini-vanilla`` adversarially fine-tuned by the project's trainer (:mod:`.robust`),
4. then continued with its own samples as negatives (stage ``samples``, :data:`.robust.SAMPLES`).

Each model folder is in open_clip layout (``open_clip_config.json`` +
``open_clip_model.safetensors``, fp16 storage). A ``build.json`` beside them records the recipe,
the timings, clean retrieval and the sha256 of every file (for ``registry.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch

__all__ = ["STAGES", "default_out", "build", "main", "sha256_of"]


def default_out() -> Path:
    """``clipag_plugin/mini/weights`` of this installation."""
    return Path(str(resources.files("clipag_plugin") / "mini" / "weights"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(obj):
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


STAGES = ("judge", "vanilla", "robust", "samples")
_RECORD_KEYS = {"judge": ("judge_recipe",), "vanilla": ("vanilla_recipe",), "robust": ("robust_recipe", "trainer_config"),
                "samples": ("samples_recipe", "samples_trainer_config")}


def build(out: Path, seed: int = 0, threads: int = 1, progress: bool = True, scale: float = 1.0,
          only: Optional[Sequence[str]] = None) -> dict:
    """Train judge, vanilla and robust models into ``out``; returns the build record.

    ``scale`` multiplies every step count (1.0 = the shipped recipe; small values for smoke tests).
    ``only`` rebuilds some stages and keeps the others' files and record from ``out`` (e.g.
    ``["robust"]`` after a trainer change; the stages are seeded, so this equals a full rebuild).
    """
    stages = tuple(only) if only else STAGES
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown build stage(s) {bad}; choose from {STAGES}")
    if "robust" in stages and "samples" not in stages:  # the robust stage rewrites mini: continue it again
        stages = (*stages, "samples")
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"seed": seed, "threads": threads, "torch": torch.__version__, "times_s": {}}
    if set(stages) != set(STAGES):
        kept = _kept_record(out, seed, stages)
        record["times_s"] = {k: v for k, v in kept.get("times_s", {}).items() if k not in (*stages, "total")}
        record.update({key: kept[key] for stage, keys in _RECORD_KEYS.items() if stage not in stages
                       for key in keys if key in kept})
    steps = lambda n: max(1, int(round(n * scale)))  # noqa: E731

    if "judge" in stages:
        _judge_stage(out, seed, steps, progress, record)
    if "vanilla" in stages:
        _vanilla_stage(out, seed, steps, progress, record)
    if "robust" in stages:
        _robust_stage(out, seed, steps, progress, record)
    if "samples" in stages:
        _samples_stage(out, seed, steps, progress, record)

    record.update(describe(out, seed))
    record["times_s"]["total"] = sum(record["times_s"].values())
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _kept_record(out: Path, seed: int, stages: Sequence[str]) -> dict:
    """The build record of the stages not rebuilt; they must exist in ``out`` with the same seed."""
    path = out / "build.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: rebuilding only {list(stages)} needs the other stages' files and build.json "
                                f"in --out; run the full build there first")
    kept = json.loads(path.read_text())
    if kept.get("seed") != seed:
        raise ValueError(f"{path} was built with seed {kept.get('seed')}, this run uses {seed}; pass --seed "
                         f"{kept.get('seed')} or rebuild every stage")
    return kept


def _judge_stage(out: Path, seed: int, steps, progress: bool, record: dict) -> None:
    from . import judge as judge_mod

    t = time.perf_counter()
    jcfg = judge_mod.JudgeConfig(steps=steps(judge_mod.JudgeConfig.steps), seed=1234 + seed)
    judge = judge_mod.train_judge(jcfg, progress=progress)
    judge_mod.save_judge(judge, out / judge_mod.WEIGHTS_NAME)
    record["times_s"]["judge"] = time.perf_counter() - t
    record["judge_recipe"] = _jsonable(jcfg)


def _vanilla_stage(out: Path, seed: int, steps, progress: bool, record: dict) -> None:
    from . import pretrain

    t = time.perf_counter()
    pcfg = pretrain.PretrainConfig(steps=steps(pretrain.PretrainConfig.steps), seed=seed)
    vanilla = pretrain.pretrain(pcfg, progress=progress)
    pretrain.save_folder(vanilla, out / "mini-vanilla")
    record["times_s"]["vanilla"] = time.perf_counter() - t
    record["vanilla_recipe"] = _jsonable(pcfg)


def _robust_stage(out: Path, seed: int, steps, progress: bool, record: dict) -> None:
    from . import pretrain, robust

    t = time.perf_counter()
    rcfg = robust.RobustConfig(steps=steps(robust.RobustConfig.steps), seed=seed)
    model = robust.make_robust(out / "mini-vanilla", rcfg, progress=progress)
    pretrain.save_folder(model.inner, out / "mini")
    record["times_s"]["robust"] = time.perf_counter() - t
    record["robust_recipe"] = _jsonable(rcfg)
    record["trainer_config"] = robust.finetune_config(rcfg).to_dict()


def _samples_stage(out: Path, seed: int, steps, progress: bool, record: dict) -> None:
    """Continue the saved (fp16) ``mini`` with its own samples as negatives, in place."""
    from . import pretrain, robust

    t = time.perf_counter()
    scfg = dataclasses.replace(robust.SAMPLES, steps=steps(robust.SAMPLES.steps), seed=seed)
    model = robust.make_robust(out / "mini", scfg, progress=progress)
    pretrain.save_folder(model.inner, out / "mini")
    record["times_s"]["samples"] = time.perf_counter() - t
    record["samples_recipe"] = _jsonable(scfg)
    record["samples_trainer_config"] = robust.finetune_config(scfg, base="mini").to_dict()


def describe(out: Path, seed: int = 0) -> dict:
    """Clean retrieval of the saved models (fp16 round trip included) and size/sha256 of every file."""
    from ..loading import load
    from . import judge as judge_mod
    from . import pretrain, world

    out = Path(out)
    record: dict = {}
    ids = torch.arange(600)
    images = world.render_clean(ids, seed=seed + 123)
    record["clean_retrieval"] = {}
    for name in ("mini-vanilla", "mini"):
        loaded, _ = load(str(out / name), device="cpu")
        record["clean_retrieval"][name] = pretrain.retrieval_accuracy(loaded.inner, images, ids)
    files = [out / judge_mod.WEIGHTS_NAME] + [out / n / f for n in ("mini-vanilla", "mini")
                                              for f in ("open_clip_config.json", "open_clip_model.safetensors")]
    record["files"] = {str(f.relative_to(out)): {"bytes": f.stat().st_size, "sha256": sha256_of(f)} for f in files}
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipag_plugin.mini.build",
        description="Rebuild the mini-world judge, mini-vanilla and mini (robust) from scratch, seeded.",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's mini/weights)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (the shipped files use 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the shipped files' setting)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply all step counts (smoke tests: 0.01)")
    parser.add_argument("--only", nargs="+", choices=STAGES, default=None,
                        help="rebuild only these stages, keeping the others' files in --out (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be > 0, got {args.scale}")
    record = build(args.out or default_out(), args.seed, args.threads, not args.quiet, args.scale, args.only)
    print(json.dumps({k: record[k] for k in ("times_s", "clean_retrieval", "files")}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
