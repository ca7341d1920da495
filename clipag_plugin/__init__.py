"""clipag-plugin: CLIPAG robust CLIP as a drop-in replacement for OpenAI's ``clip``.

``import clipag as clip`` gives the same three functions as OpenAI's package
(:func:`load`, :func:`tokenize`, :func:`available_models`), backed by adversarially
fine-tuned encoders whose input gradients are perceptually aligned. Importing is cheap:
nothing is loaded or downloaded until a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loading import available_models as available_models
from .loading import load as load
from .tokenizer import tokenize as tokenize

__version__ = "0.1.0"

__all__ = ["load", "tokenize", "available_models", "generate", "generate_iter", "generate_batch", "read_captions",
           "GenerationFrame", "GenerationResult", "__version__"]
_LAZY = ("generate", "generate_iter", "generate_batch", "read_captions", "GenerationFrame", "GenerationResult")

if TYPE_CHECKING:  # pragma: no cover
    from .synthesis import GenerationFrame as GenerationFrame
    from .synthesis import GenerationResult as GenerationResult
    from .synthesis import generate as generate
    from .synthesis import generate_batch as generate_batch
    from .synthesis import generate_iter as generate_iter
    from .synthesis import read_captions as read_captions


def __getattr__(name: str) -> Any:
    # Heavier pieces import on first use so that `import clipag` stays cheap.
    if name in _LAZY:
        from . import synthesis

        return getattr(synthesis, name)
    raise AttributeError(f"module 'clipag_plugin' has no attribute {name!r}")
