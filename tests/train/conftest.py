"""Synthetic caption data for the trainer's tests: tiny PNGs with sidecar captions, CSVs, tar shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SHAPES = ("square", "bar", "dot", "frame")


def caption_of(i: int) -> str:
    return f"a {list(COLORS)[i % 4]} {SHAPES[(i // 4) % 4]} number {i}"


def png_bytes(i: int, size: int = 40) -> bytes:
    """A small deterministic picture for sample ``i``."""
    from PIL import Image

    g = torch.Generator().manual_seed(i)
    pixels = (torch.rand(size, size, 3, generator=g) * 60).to(torch.uint8)
    color = torch.tensor(COLORS[list(COLORS)[i % 4]], dtype=torch.uint8)
    lo, hi = 4 + (i % 5), size - 4 - (i % 3)
    pixels[lo:hi, lo:hi] = color
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def write_caption_folder(folder: Path, n: int, corrupt: int = 0) -> Path:
    """``n`` images with sidecar captions, plus ``corrupt`` broken samples (bad bytes, empty caption, no caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:05d}.png").write_bytes(png_bytes(i))
        (folder / f"{i:05d}.txt").write_text(caption_of(i))
    kinds = ["bad-bytes", "empty-caption", "no-caption"]
    for j in range(corrupt):
        kind = kinds[j % 3]
        stem = folder / f"zz-corrupt-{j}"
        (stem.with_suffix(".png")).write_bytes(b"not a png" if kind == "bad-bytes" else png_bytes(1000 + j))
        if kind == "bad-bytes":
            (stem.with_suffix(".txt")).write_text("a broken picture")
        elif kind == "empty-caption":
            (stem.with_suffix(".txt")).write_text("   ")
    return folder


def write_tar_shards(folder: Path, n: int, shards: int, corrupt_every: int = 0) -> list[Path]:
    """img2dataset layout: ``{key}.png`` + ``{key}.txt`` per sample; every ``corrupt_every``-th image broken."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(s, n, shards):
                data = png_bytes(i)
                if corrupt_every and i % corrupt_every == corrupt_every - 1:
                    data = b"\x89PNG broken"
                for name, payload in ((f"{i:09d}.png", data), (f"{i:09d}.txt", caption_of(i).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        paths.append(path)
    return paths


@pytest.fixture
def caption_folder(tmp_path) -> Path:
    return write_caption_folder(tmp_path / "captions", 16)


@pytest.fixture
def one_thread():
    """Single-threaded torch for bit-exact comparisons with a subprocess."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
