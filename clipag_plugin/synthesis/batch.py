"""Many captions, one model load: batch generation that resumes after any interruption.

:func:`read_captions` reads a caption file (one caption a line, or CSV / JSONL with ``id`` and
``caption``); :func:`generate_batch` paints every caption (``per_caption`` images each) into
``out_dir/<model>/<id>.png``. Several captions share one optimizer batch, each image scored
against its own caption (per-image prompt weights, see
:func:`~clipag_plugin.guidance.losses.prompt_loss`), so the encoder runs on full batches.

What makes it safe to kill at any moment:

- every PNG is written to a temporary name and renamed, so a file is whole or absent;
- a picture counts as done when its line is in the manifest (``manifest.jsonl``, one JSON object a
  line: id, caption, seed, file, settings hash, loss, seconds) and its file exists; lines are
  appended after the file is renamed, flushed and synced; a torn last line is ignored;
- a rerun with the same settings skips what is done; with other settings it stops and says so.

Under ``torchrun`` each rank takes every ``world_size``-th batch of the caption order and appends
to a manifest part of its own; rank 0 merges the parts at the end. A caption's seed depends only
on its id, ``seed`` and its index among ``per_caption`` (:func:`caption_seed`), and the batches are
cut from the whole caption list, so the pictures do not depend on the number of ranks.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import torch

from .loop import GenerateConfig, Guide, optimize, prepare_guides
from .models import ModelLike, as_model
from .presets import AUTO, PresetArg, resolve_config

__all__ = ["Caption", "read_captions", "caption_seed", "settings_hash", "Manifest", "BatchSummary",
           "generate_batch", "MANIFEST"]

logger = logging.getLogger("clipag_plugin.batch")
MANIFEST = "manifest.jsonl"
_PART = "manifest.part-{rank}.jsonl"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Caption:
    """One caption to paint; ``id`` names its files (letters, digits, ``_.-``)."""

    id: str
    text: str


def read_captions(path: Union[str, os.PathLike]) -> list[Caption]:
    """The captions of a file: ``.txt`` one a line (ids ``000001``...), ``.csv`` with a ``caption`` column
    (and ``id``), ``.jsonl`` with ``caption`` (and ``id``) per line.

    Args:
        path: the caption file.

    Returns:
        The captions in file order; ids given in the file are kept, others are the caption's number.

    Raises:
        ValueError: an empty file, an empty caption, a bad or repeated id (naming the line).
        FileNotFoundError: no such file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"caption file {file} does not exist; give a .txt (one caption a line), "
                                f".csv or .jsonl (id, caption)")
    text = file.read_text(encoding="utf-8-sig")
    rows: list[tuple[int, Optional[str], Any]] = []
    if file.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "caption" not in reader.fieldnames:
            raise ValueError(f"{file}: a CSV caption file needs a 'caption' column (and optionally 'id'); "
                             f"found {reader.fieldnames}")
        rows = [(i + 2, r.get("id"), r.get("caption")) for i, r in enumerate(reader)]
    elif file.suffix.lower() in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}, line {number}: not JSON ({err.msg}); one object a line, "
                                 f'e.g. {{"id": "1", "caption": "a red barn"}}') from None
            if not isinstance(item, dict) or "caption" not in item:
                raise ValueError(f"{file}, line {number}: needs a 'caption' field")
            rows.append((number, item.get("id"), item["caption"]))
    else:
        rows = [(n, None, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    captions, seen = [], {}
    for index, (number, given, caption) in enumerate(rows):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{file}, line {number}: empty caption")
        cid = str(given).strip() if given not in (None, "") else f"{index + 1:06d}"
        if not _ID.match(cid):
            raise ValueError(f"{file}, line {number}: id {cid!r} cannot name a file; use letters, digits, '_', "
                             f"'.' and '-' (at most 100)")
        if cid in seen:
            raise ValueError(f"{file}, line {number}: id {cid!r} repeats line {seen[cid]}; ids must be unique")
        seen[cid] = number
        captions.append(Caption(cid, " ".join(caption.split())))
    if not captions:
        raise ValueError(f"caption file {file} has no captions")
    return captions


def caption_seed(caption_id: str, seed: int = 0, index: int = 0) -> int:
    """The seed of picture ``index`` of a caption: a function of the id and ``seed`` only (not of the
    caption's place in the file, the batch or the rank), in ``[0, 2**31)``."""
    digest = hashlib.sha256(f"{seed}:{index}:{caption_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def settings_hash(models: Sequence[str], config: GenerateConfig) -> str:
    """12 hex digits naming the models and every resolved setting: pictures with equal hashes were
    made the same way."""
    blob = json.dumps({"models": list(models), "config": dataclasses.asdict(config)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _slug(names: Sequence[str]) -> str:
    return "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", n).strip("-") for n in names)


class Manifest:
    """The records of an output folder: ``manifest.jsonl`` and the ranks' parts, read tolerantly."""

    def __init__(self, out_dir: Union[str, os.PathLike], rank: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.part = self.out_dir / _PART.format(rank=rank)

    def files(self) -> list[Path]:
        """The manifest and every part, merged first."""
        return [p for p in [self.out_dir / MANIFEST, *sorted(self.out_dir.glob(_PART.format(rank="*")))] if p.is_file()]

    def records(self) -> list[dict]:
        """Every whole record (a torn last line of a killed writer is skipped), later ones winning."""
        found: dict[tuple, dict] = {}
        for path in self.files():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and {"model", "id", "index", "file"} <= set(record):
                    found[(record["model"], record["id"], record["index"])] = record
        return list(found.values())

    def done(self) -> dict[tuple, dict]:
        """``(model, id, index) -> record`` of the pictures whose file is there."""
        return {(r["model"], r["id"], r["index"]): r for r in self.records() if (self.out_dir / r["file"]).is_file()}

    def append(self, records: Iterable[dict]) -> None:
        """Add records to this rank's part, synced to disk."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.part, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def merge(self, order: Sequence[str]) -> Path:
        """Write every record into ``manifest.jsonl`` (caption order, then model and index) and drop the parts."""
        rank = {cid: i for i, cid in enumerate(order)}
        records = sorted(self.records(), key=lambda r: (r["model"], rank.get(r["id"], len(rank)), r["id"], r["index"]))
        target = self.out_dir / MANIFEST
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, target)
        for part in self.out_dir.glob(_PART.format(rank="*")):
            part.unlink(missing_ok=True)
        return target


@dataclass
class BatchSummary:
    """What a batch run did: pictures made now, found done, the manifest and the settings hash."""

    made: int
    skipped: int
    manifest: Optional[Path]
    folder: Path
    settings: str
    seconds: float


def _save_atomic(image: torch.Tensor, path: Path) -> None:
    from torchvision.transforms.functional import to_pil_image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    to_pil_image(image.detach().float().clamp(0, 1).cpu()).save(tmp, format="PNG")
    os.replace(tmp, path)


def generate_batch(
    captions: Sequence[Caption],
    model: Union[ModelLike, Sequence[ModelLike]],
    out_dir: Union[str, os.PathLike],
    *,
    per_caption: int = 1,
    seed: int = 0,
    batch_size: int = 8,
    device: Optional[str] = None,
    preset: PresetArg = AUTO,
    progress: Optional[bool] = None,
    log_every: int = 10,
    **options: Any,
) -> BatchSummary:
    """Paint every caption into ``out_dir/<model>/``, skipping what an earlier run finished.

    Args:
        captions: from :func:`read_captions`; each caption is one prompt, taken literally.
        model: a name, path or loaded model, or a list of them (an ensemble).
        out_dir: the output folder (one sub-folder per model; the manifest at the top).
        per_caption: pictures per caption (files ``<id>_s<k>.png`` when more than one).
        seed: the base of every caption's seeds (:func:`caption_seed`).
        batch_size: pictures optimized together.
        device: where to load models given by name.
        preset: the generation preset (as :func:`~.api.generate_tensor`).
        progress: a bar over the pictures on a terminal (None), always (True) or never (False).
        log_every: pictures between log lines off a terminal.
        options: :class:`~.loop.GenerateConfig` fields, winning over the preset.

    Returns:
        A :class:`BatchSummary` (the manifest is merged by rank 0 under ``torchrun``).
    """
    from ..guidance.prompts import Prompt
    from ..progress import StepProgress
    from ..train import dist
    from .api import _check_size, _encode_prompts, make_init
    from .param import check_levels, default_levels

    if per_caption < 1 or batch_size < 1:
        raise ValueError(f"per_caption={per_caption}, batch_size={batch_size}: both must be at least 1")
    started = time.perf_counter()
    where = dist.info()
    items = list(model) if isinstance(model, list) else [model]
    config, chosen = resolve_config(items, preset, options)
    models = [as_model(item, device) for item in items]
    names = [str(getattr(m, "name", "") or (i if isinstance(i, str) else type(m).__name__))
             for m, i in zip(models, items, strict=True)]
    # the run's encoders, prepared once (precision, weights); each batch puts its captions' texts in
    guides = [Guide(m, torch.empty(0), torch.empty(0), None, name=n) for m, n in zip(models, names, strict=True)]
    run_device = next(models[0].parameters()).device
    guides, config = prepare_guides(guides, config, run_device)
    size = config.size if config.size is not None else guides[0].resolution
    _check_size(size, guides)
    if config.param == "multires":
        config = dataclasses.replace(config, levels=check_levels(config.levels or default_levels(size), size))
    label, digest = _slug(names), settings_hash(names, config)
    folder = Path(out_dir) / label
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir, where.rank)
    done = manifest.done()
    clash = [r for r in done.values() if r["model"] == label and r["settings"] != digest]
    if clash:
        raise ValueError(f"{folder} already holds pictures made with other settings (hash {clash[0]['settings']}, "
                         f"now {digest}); write to another out-dir, or delete {folder} and its manifest lines")
    if where.is_main:
        (folder / "settings.json").write_text(json.dumps(
            {"models": names, "preset": chosen.name if chosen else None, "settings": digest,
             "config": dataclasses.asdict(config)}, indent=2, default=str))
    jobs = [(c, k) for c in captions for k in range(per_caption)]
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    mine = [[j for j in b if (label, j[0].id, j[1]) not in done] for b in batches[where.rank::where.world_size]]
    pending = sum(len(b) for b in mine)
    skipped = sum(len(b) for b in batches[where.rank::where.world_size]) - pending
    if skipped:
        logger.info("%s: %d pictures already done in %s, %d to paint", label, skipped, folder, pending)
    made = 0
    with StepProgress(pending, f"{label}: batch", progress, every=log_every, log=logger, unit="image") as bar:
        for batch in filter(None, mine):
            t0 = time.perf_counter()
            seeds = [caption_seed(c.id, seed, k) for c, k in batch]
            texts = [_encode_prompts(g.model, [Prompt(c.text) for c, _ in batch], config.truncate) for g in guides]
            rows = [dataclasses.replace(g, texts=t, weights=torch.eye(len(batch), device=t.device))
                    for g, t in zip(guides, texts, strict=True)]
            init = torch.cat([make_init([dataclasses.replace(g, texts=g.texts[i:i + 1],
                                                             weights=torch.ones(1, device=g.texts.device))
                                         for g in rows], config, size, s) for i, s in enumerate(seeds)])
            generators = [torch.Generator().manual_seed(s + 0x5EED) for s in seeds]
            result = optimize(init, rows, config, generators)
            seconds = (time.perf_counter() - t0) / len(batch)
            records = []
            for i, ((caption, k), s) in enumerate(zip(batch, seeds, strict=True)):
                name = f"{caption.id}.png" if per_caption == 1 else f"{caption.id}_s{k}.png"
                _save_atomic(result.images[i], folder / name)
                records.append({"id": caption.id, "caption": caption.text, "index": k, "seed": s, "model": label,
                                "file": f"{label}/{name}", "settings": digest, "loss": float(result.loss[i]),
                                "cosine": float(result.cosine[i]), "step": int(result.step[i]),
                                "seconds": round(seconds, 3)})
            manifest.append(records)
            made += len(batch)
            for _ in batch:
                bar.update()
    dist.barrier()
    merged = manifest.merge([c.id for c in captions]) if where.is_main else None
    return BatchSummary(made, skipped, merged, folder, digest, time.perf_counter() - started)

