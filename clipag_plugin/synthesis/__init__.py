"""Generator-free text-to-image: optimize pixels against a robust CLIP (the CLIPAG paper's headline)."""

from __future__ import annotations

from .api import default_model_choice, generate, generate_iter, generate_tensor, resolve_default_model
from .batch import generate_batch, read_captions
from .loop import GenerateConfig, GenerationFrame, GenerationResult

__all__ = [
    "generate",
    "generate_tensor",
    "generate_iter",
    "generate_batch",
    "read_captions",
    "GenerationFrame",
    "resolve_default_model",
    "default_model_choice",
    "GenerateConfig",
    "GenerationResult",
]
