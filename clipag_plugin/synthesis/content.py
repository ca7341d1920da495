"""Content photos for image-to-image apps (CLIPStyler): read, convert to RGB, resize to a working size.

A photo may come as a file, one of scikit-image's bundled sample photos (offline demos), a PIL
image, a numpy array or a tensor. Every problem (an unreadable file, a decompression bomb, an
image too small or a size too large to run) is a ``ValueError`` or ``FileNotFoundError`` that
names the input and the fix; a conversion that changes the picture (alpha, grayscale) warns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .stylenet import SIDE_MULTIPLE

__all__ = ["ImageSource", "DEMO_PHOTOS", "MIN_SIDE", "MAX_SIDE", "REFERENCE_SIZE", "read_image", "to_rgb",
           "content_shape", "load_content"]

REFERENCE_SIZE = 512  # CLIPStyler's working size
MIN_SIDE, MAX_SIDE = 32, 2048
# Photos that ship inside scikit-image (offline demos): name -> function in skimage.data.
DEMO_PHOTOS = (
    "astronaut", "coffee", "chelsea", "cat", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
    "retina", "logo",
)

ImageSource = Union[str, Path, "Any"]


def read_image(source: ImageSource, size_hint: Optional[int] = None):
    """A PIL image from a path, a scikit-image demo name, a PIL image, a numpy array or a tensor.

    ``size_hint``: a large JPEG file is decoded at a reduced scale no smaller than this.
    """
    import numpy as np
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu().float()
        t = t[0] if t.ndim == 4 and t.shape[0] == 1 else t
        if t.ndim == 3 and t.shape[0] in (1, 2, 3, 4):
            t = t.permute(1, 2, 0)
        if t.ndim == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        source = (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
            raise ValueError(f"image array of shape {array.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    path = Path(str(source)).expanduser()
    if path.is_file():
        try:
            image = Image.open(path)
            if size_hint and image.format == "JPEG":
                image.draft("RGB", (size_hint, size_hint))  # decode big photos at 1/2, 1/4 or 1/8 scale
            image.load()
            return image
        except Image.DecompressionBombError as err:
            raise ValueError(
                f"content image {path} is too large to open safely ({err}); downscale it first "
                f"(e.g. to 2048 px), the style net works at {MAX_SIDE} px at most"
            ) from None
        except OSError as err:
            raise ValueError(f"content image {path} is not a readable image ({err})") from None
    if str(source) in DEMO_PHOTOS:
        import skimage.data

        return Image.fromarray(getattr(skimage.data, str(source))())
    raise FileNotFoundError(
        f"content image {str(source)!r} is neither a file nor a bundled photo; give a path or one of "
        f"{', '.join(DEMO_PHOTOS)} (scikit-image's sample photos, available offline)"
    )


def to_rgb(image, label: str = "content image"):
    """Convert any PIL mode to RGB; transparency is composited over white. Warns about what it did."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        warnings.warn(f"{label} has an alpha channel ({image.mode}); composited over white", stacklevel=3)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("L", "1", "I", "I;16", "F"):
        warnings.warn(f"{label} is grayscale ({image.mode}); repeated to 3 channels", stacklevel=3)
        if image.mode in ("I", "I;16", "F"):
            import numpy as np

            array = np.asarray(image, dtype=np.float64)
            span = float(array.max() - array.min()) or 1.0
            image = Image.fromarray(((array - array.min()) / span * 255).round().astype("uint8"))
        return image.convert("RGB")
    warnings.warn(f"{label} is in mode {image.mode}; converted to RGB", stacklevel=3)
    return image.convert("RGB")


def content_shape(width: int, height: int, size: int, keep_aspect: bool = False) -> tuple[int, int]:
    """``(H, W)`` the image is resized to: ``size`` x ``size`` (as the reference), or the longer
    side = ``size`` with the aspect kept. Sides are rounded down to multiples of 8, with a warning."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(f"size must be an integer number of pixels, got {size!r}")
    if size > MAX_SIDE:
        raise ValueError(
            f"size {size} px is too large: the style net and VGG19 run at full resolution (memory grows with "
            f"the square of the side); use --size {MAX_SIDE} or less (the reference uses {REFERENCE_SIZE})"
        )
    if size < MIN_SIDE:
        raise ValueError(f"size {size} px is too small; use at least {MIN_SIDE} (VGG19 pools the image 4 times)")
    if keep_aspect:
        scale = size / max(width, height)
        sides = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
    else:
        sides = (size, size)
    rounded = tuple(s - s % SIDE_MULTIPLE for s in sides)
    if rounded != sides:
        warnings.warn(
            f"image sides {sides[1]}x{sides[0]} are not multiples of {SIDE_MULTIPLE} (the style net halves them "
            f"three times); resizing to {rounded[1]}x{rounded[0]}",
            stacklevel=2,
        )
    return rounded  # type: ignore[return-value]


def load_content(source: ImageSource, size: int, keep_aspect: bool = False) -> torch.Tensor:
    """The content image as a ``(1, 3, H, W)`` tensor in [0, 1], sides multiples of 8."""
    import numpy as np
    from PIL import Image

    image = to_rgb(read_image(source, size_hint=size))
    height, width = content_shape(image.width, image.height, size, keep_aspect)
    if image.width < 8 or image.height < 8:
        raise ValueError(f"content image is only {image.width}x{image.height} px; give a real photo")
    if (image.width, image.height) != (width, height):
        image = image.resize((width, height), Image.BICUBIC, reducing_gap=3.0)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()
