"""Image-caption data: tar shards (img2dataset / webdataset layout), CSV, image folders.

Shards may be local files, ``pipe:COMMAND`` (the command's stdout, e.g. ``pipe:aws s3 cp
s3://bucket/{00000..00099}.tar -``) or ``http(s)://`` URLs, as webdataset names them: every rank
streams its own shards without copying them, and resuming re-streams a shard up to its position.

Three layers, each replaceable:

* a *source* lists raw records (key, image bytes or path, caption) for one epoch, shuffled
  with a seed and cut into blocks so that ranks and loader workers share the work;
* :func:`decode_record` turns one record into ``(image01, tokens)`` or ``None`` when the image
  or caption cannot be read (skipped and counted, never fatal);
* :class:`CaptionStream` batches decoded samples per rank and worker, forever (epoch after
  epoch), and tags every batch with its *position* so that training resumes exactly.

Sharding rule: records of an epoch are taken in blocks of the local batch size; block ``k``
goes to rank ``k % world`` and, inside it, to loader worker ``(k // world) % workers``. With
no corrupt samples, micro-batch ``m`` of every rank together is then exactly block range
``[m * world, (m + 1) * world)``: the global batch does not depend on the number of processes.
"""

from __future__ import annotations

import csv
import glob
import io
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch

__all__ = [
    "Record",
    "IMAGE_EXTENSIONS",
    "expand_shards",
    "detect_format",
    "TarSource",
    "ListSource",
    "csv_source",
    "folder_source",
    "open_source",
    "decode_record",
    "image_to_tensor",
    "CaptionStream",
    "make_loader",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Record:
    """One raw sample: image as bytes or a path; caption as text, bytes, a path or None."""

    key: str
    image: Union[bytes, Path, None]
    caption: Union[str, bytes, Path, None]


def _mix(*values: int) -> int:
    """Deterministic 63-bit seed from integers (epoch, slot, ...)."""
    out = 0x9E3779B97F4A7C15
    for v in values:
        out = (out ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return out & 0x7FFFFFFFFFFFFFFF


# --- sources --------------------------------------------------------------------------------
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_shards(spec: str) -> list[str]:
    """``a/{000..009}.tar`` and ``a/{x,y}.tar`` brace patterns, ``::``-joined lists, globs, folders;
    ``pipe:COMMAND`` and ``http(s)://`` shards (brace patterns included) are kept as streams."""
    out: list[str] = []
    for part in spec.split("::"):
        m = _BRACE.search(part)
        if m:
            body = m.group(1)
            if ".." in body:
                lo, hi = body.split("..", 1)
                width = len(lo) if lo.startswith("0") else 0
                choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
            else:
                choices = body.split(",")
            for c in choices:
                out += expand_shards(part[: m.start()] + c + part[m.end():])
            continue
        if _is_stream(part):
            out.append(part)
            continue
        path = Path(part).expanduser()
        if path.is_dir():
            out += sorted(str(p) for p in path.glob("*.tar"))
        elif any(ch in part for ch in "*?["):
            out += sorted(glob.glob(str(path)))
        else:
            out.append(str(path))
    return out


def _is_stream(shard: str) -> bool:
    """A shard read as a stream: ``pipe:COMMAND`` (its stdout) or an http(s) URL, as webdataset names them."""
    return shard.startswith(("pipe:", "http://", "https://"))


def _open_shard(shard: str):
    """A binary stream of one shard: a local file, a command's stdout (``pipe:``) or an HTTP response."""
    if shard.startswith("pipe:"):
        import subprocess

        process = subprocess.Popen(shard[len("pipe:"):], shell=True, stdout=subprocess.PIPE)  # noqa: S602
        process.stdout._clipag_process = process  # type: ignore[attr-defined]
        return process.stdout
    if shard.startswith(("http://", "https://")):
        import urllib.request

        from .. import __version__

        request = urllib.request.Request(shard, headers={"User-Agent": f"clipag-plugin/{__version__}"})
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - the user's own data URL
    return open(shard, "rb")


def detect_format(spec: str) -> str:
    """``tar``, ``csv`` or ``folder`` for a data argument (see :class:`FinetuneConfig.data`)."""
    lower = spec.lower()
    if lower.endswith((".csv", ".tsv")):
        return "csv"
    if "{" in spec or "::" in spec or lower.endswith(".tar") or "*" in spec:
        return "tar"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "tar" if any(path.glob("*.tar")) else "folder"
    raise ValueError(
        f"data {spec!r}: cannot tell its format; give tar shards ('dir/{{00000..00009}}.tar' or a folder of .tar), "
        f"a .csv/.tsv of path,caption, or a folder of images with sidecar .txt captions (or set data_format)"
    )


def _block_owner(position: int, block: int, num_slots: int) -> int:
    return (position // block) % num_slots


class ListSource:
    """Records known up front (CSV rows, folder files): shuffled by a seeded permutation per epoch."""

    def __init__(self, records: Sequence[Record], name: str = "") -> None:
        if not records:
            raise ValueError(f"data {name!r}: found no samples")
        self.records = list(records)
        self.name = name

    def __len__(self) -> int:
        return len(self.records)

    def epoch(self, epoch: int, seed: int, slot: int, num_slots: int, block: int, shuffle: bool = True) -> Iterator[Record]:
        """This slot's records of ``epoch``, in order."""
        n = len(self.records)
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch))).tolist()
        else:
            order = range(n)
        for position, index in enumerate(order):
            if _block_owner(position, block, num_slots) == slot:
                yield self.records[index]


def csv_source(path: str | Path, path_column: str = "path", caption_column: str = "caption") -> ListSource:
    """A CSV/TSV with a header; image paths relative to the file's folder."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        if path_column not in columns or caption_column not in columns:
            raise KeyError(
                f"{path}: needs columns {path_column!r} and {caption_column!r}, has {columns}; "
                f"set csv_path_column / csv_caption_column"
            )
        records = [
            Record(str(i), (path.parent / row[path_column]) if row[path_column] else None, row[caption_column])
            for i, row in enumerate(reader)
        ]
    return ListSource(records, str(path))


def folder_source(folder: str | Path) -> ListSource:
    """Every image under ``folder`` (recursively) with the caption in the ``.txt`` of the same stem."""
    folder = Path(folder)
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    records = [Record(str(p.relative_to(folder)), p, p.with_suffix(".txt")) for p in images]
    return ListSource(records, str(folder))


class TarSource:
    """Tar shards streamed member by member (no index, no random access).

    A sample is the run of consecutive members sharing a key (path up to the first dot of the
    file name), as img2dataset and webdataset write them. With at least as many shards as slots,
    each slot reads its own shards; otherwise every slot reads everything and keeps its blocks.
    """

    def __init__(self, shards: Sequence[str], shuffle_buffer: int = 1000, name: str = "") -> None:
        if not shards:
            raise ValueError(f"data {name!r}: matched no tar shards")
        self.shards = list(shards)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.name = name
        self.read_errors = 0

    def _members(self, shard: str) -> Iterator[Record]:
        current: Optional[str] = None
        files: dict[str, bytes] = {}
        stream, failed = None, False
        try:
            stream = _open_shard(shard)
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    name = member.name
                    base = name.rsplit("/", 1)[-1]
                    if "." not in base:
                        continue
                    stem, ext = base.split(".", 1)
                    key = (name.rsplit("/", 1)[0] + "/" if "/" in name else "") + stem
                    handle = tar.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    if key != current and current is not None:
                        yield self._record(current, files)
                        files = {}
                    current = key
                    files[ext.lower()] = data
        except (tarfile.TarError, OSError, EOFError):
            failed = True  # a truncated or unreadable shard ends early; the rest still counts
        finally:
            if stream is not None:
                stream.close()
                process = getattr(stream, "_clipag_process", None)
                failed = failed or (process is not None and process.wait() != 0)  # the command failed
            self.read_errors += int(failed)
        if current is not None:
            yield self._record(current, files)

    @staticmethod
    def _record(key: str, files: dict[str, bytes]) -> Record:
        image = next((files[e] for e in ("jpg", "jpeg", "png", "webp", "bmp") if e in files), None)
        return Record(key, image, files.get("txt"))

    def epoch(self, epoch: int, seed: int, slot: int, num_slots: int, block: int, shuffle: bool = True) -> Iterator[Record]:
        rng = random.Random(_mix(seed, epoch, 1))
        shards = list(self.shards)
        if shuffle:
            rng.shuffle(shards)
        own_shards = len(shards) >= num_slots
        if own_shards:
            shards = shards[slot::num_slots]
            rng = random.Random(_mix(seed, epoch, 2, slot))
        stream = (r for shard in shards for r in self._members(shard))
        if shuffle:
            stream = _buffer_shuffle(stream, self.shuffle_buffer, rng)
        for position, record in enumerate(stream):
            if own_shards or _block_owner(position, block, num_slots) == slot:
                yield record


def _buffer_shuffle(stream: Iterator[Record], size: int, rng: random.Random) -> Iterator[Record]:
    buffer: list[Record] = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.randrange(size)
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def open_source(spec: str, data_format: str = "auto", shuffle_buffer: int = 1000,
                csv_path_column: str = "path", csv_caption_column: str = "caption"):
    """The source behind a data argument (tar shards, CSV or caption folder)."""
    fmt = detect_format(spec) if data_format == "auto" else data_format
    if fmt == "tar":
        return TarSource(expand_shards(spec), shuffle_buffer, spec)
    if fmt == "csv":
        return csv_source(spec, csv_path_column, csv_caption_column)
    if fmt == "folder":
        return folder_source(spec)
    raise ValueError(f"data_format={data_format!r}; choose one of auto, tar, csv, folder")


# --- decoding -------------------------------------------------------------------------------
def image_to_tensor(image, resolution: int) -> torch.Tensor:
    """PIL image -> ``(3, R, R)`` float in [0, 1]: bicubic resize of the short side, center crop."""
    from torchvision.transforms import functional as TF

    image = image.convert("RGB")
    image = TF.resize(image, resolution, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    image = TF.center_crop(image, [resolution, resolution])
    return TF.to_tensor(image)


def _read_caption(caption: Union[str, bytes, Path, None]) -> Optional[str]:
    if caption is None:
        return None
    if isinstance(caption, Path):
        if not caption.is_file():
            return None
        caption = caption.read_bytes()
    if isinstance(caption, bytes):
        caption = caption.decode("utf-8")
    caption = caption.strip()
    return caption or None


def decode_record(record: Record, resolution: int, context_length: int = 77) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(image01 (3,R,R), tokens (context_length,))`` or None when image or caption is unreadable."""
    from PIL import Image

    from ..tokenizer import tokenize

    try:
        caption = _read_caption(record.caption)
        if caption is None or record.image is None:
            return None
        source = io.BytesIO(record.image) if isinstance(record.image, bytes) else record.image
        with Image.open(source) as image:
            image.load()
            pixels = image_to_tensor(image, resolution)
        tokens = tokenize(caption, context_length=context_length, truncate=True)[0]
    except (OSError, ValueError, UnicodeDecodeError, SyntaxError, Image.DecompressionBombError):
        return None
    return pixels, tokens


# --- batching -------------------------------------------------------------------------------
class CaptionStream(torch.utils.data.IterableDataset):
    """Endless batches ``{"images", "tokens", "worker", "state"}`` for one rank.

    ``state`` is the worker's position *after* the batch: ``{"epoch", "consumed", "skipped"}``
    (records of the epoch read, samples skipped so far). Pass the states recorded at a
    checkpoint as ``start_states`` and the number of micro-batches consumed as ``start_micro``
    to continue exactly where a run stopped.
    """

    def __init__(self, source, batch_size: int, resolution: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, start_states: Optional[Sequence[dict]] = None, start_micro: int = 0,
                 context_length: int = 77, shuffle: bool = True) -> None:
        super().__init__()
        self.source, self.batch_size, self.resolution = source, int(batch_size), int(resolution)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.workers = max(1, num_workers)
        self.start_states = list(start_states) if start_states else [dict(epoch=0, consumed=0, skipped=0)] * self.workers
        if len(self.start_states) != self.workers:
            raise ValueError(
                f"resume state has {len(self.start_states)} loader workers but num_workers gives {self.workers}; "
                f"resume with the same num_workers and number of processes"
            )
        self.start_micro = int(start_micro)
        self.context_length = context_length
        self.shuffle = shuffle

    def _logical_worker(self) -> int:
        info = torch.utils.data.get_worker_info()
        physical = info.id if info is not None else 0
        # the DataLoader always starts with worker 0; rotate so the resumed order is unchanged
        return (physical + self.start_micro) % self.workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = self._logical_worker()
        slot = worker * self.world_size + self.rank
        num_slots = self.workers * self.world_size
        state = dict(self.start_states[worker])
        epoch, consumed, skipped = int(state["epoch"]), int(state["consumed"]), int(state["skipped"])
        images: list[torch.Tensor] = []
        tokens: list[torch.Tensor] = []
        while True:
            records = self.source.epoch(epoch, self.seed, slot, num_slots, self.batch_size, self.shuffle)
            read = 0
            for index, record in enumerate(records):
                read += 1
                if index < consumed:
                    continue  # resume: skip without decoding
                consumed = index + 1
                sample = decode_record(record, self.resolution, self.context_length)
                if sample is None:
                    skipped += 1
                    continue
                images.append(sample[0])
                tokens.append(sample[1])
                if len(images) == self.batch_size:
                    yield {
                        "images": torch.stack(images),
                        "tokens": torch.stack(tokens),
                        "worker": worker,
                        "state": {"epoch": epoch, "consumed": consumed, "skipped": skipped},
                    }
                    images, tokens = [], []
            if read == 0:
                raise ValueError(
                    f"data {getattr(self.source, 'name', '')!r}: no samples for rank {self.rank} worker {worker} "
                    f"({num_slots} slots); use fewer processes/workers or more data"
                )
            epoch, consumed = epoch + 1, 0


def make_loader(stream: CaptionStream, num_workers: int, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over a :class:`CaptionStream` (the stream batches; the loader only parallelizes)."""
    return torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=False, prefetch_factor=2 if num_workers > 0 else None,
    )
