"""Writing images, optimization frames and animated GIFs (imageio when installed, else PIL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

__all__ = ["check_writable", "image_extensions", "save_gif"]


def image_extensions() -> set[str]:
    """File extensions PIL can write."""
    from PIL import Image

    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def check_writable(path: str | os.PathLike, kind: str = "image") -> Path:
    """Fail early, with a clear message, when ``path`` cannot be written (before any compute)."""
    path = Path(path).expanduser()
    if kind == "image" and path.suffix.lower() not in image_extensions():
        raise ValueError(f"output {path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; give a file name such as {path / 'out.png'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ValueError(f"output {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"output {path}: not writable (check the folder's permissions or pick another path)")
    return path


def save_gif(images: Sequence, path: str | os.PathLike, duration_s: float = 0.1) -> Path:
    """Write PIL images as an animated GIF (loops forever)."""
    path = Path(path)
    if not images:
        raise ValueError("no frames to write into a GIF; pass --save-every K with K <= steps")
    try:
        import imageio.v2 as imageio
        import numpy as np

        imageio.mimsave(path, [np.asarray(im.convert("RGB")) for im in images], duration=duration_s, loop=0)
    except ImportError:
        first, *rest = [im.convert("RGB") for im in images]
        first.save(path, save_all=True, append_images=rest, duration=int(duration_s * 1000), loop=0)
    return path
