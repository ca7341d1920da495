"""Generator-free text-to-image: optimize pixels against a robust CLIP (the CLIPAG paper's headline)."""

from __future__ import annotations

from .api import default_model_choice, generate, generate_iter, generate_tensor, resolve_default_model
from .loop import GenerateConfig, GenerationFrame, GenerationResult

__all__ = [
    "generate",
    "generate_tensor",
    "generate_iter",
    "GenerationFrame",
    "resolve_default_model",
    "default_model_choice",
    "GenerateConfig",
    "GenerationResult",
]
