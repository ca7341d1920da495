"""``tokenize`` with OpenAI's semantics, on open_clip's byte-pair encoder (same vocabulary)."""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, Callable, List, Optional, Sequence, Union

import torch

__all__ = ["tokenize", "tokenizer_for", "ContextLengthError"]


class ContextLengthError(ValueError, RuntimeError):
    """Text longer than the context length (a ``RuntimeError`` too, as OpenAI's code raises)."""


@lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenize(texts: Union[str, List[str]], context_length: int = 77, truncate: bool = False) -> torch.IntTensor:
    """Token ids of ``texts`` as a ``(N, context_length)`` int32 tensor, like OpenAI's ``clip.tokenize``.

    Raises :class:`ContextLengthError` for a text that does not fit, unless ``truncate=True``
    (then the text is cut and still ends with the end-of-text token).

    Args:
        texts: one text or a list of texts.
        context_length: tokens per row, start and end tokens included (77 for every CLIP here).
        truncate: cut texts that do not fit instead of raising.

    Returns:
        ``(len(texts), context_length)`` int32 token ids, zero-padded.
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError(f"context_length={context_length} leaves no room for start and end tokens; use >= 2")
    tok = _tokenizer()
    sot, eot = tok.sot_token_id, tok.eot_token_id
    result = torch.zeros(len(texts), context_length, dtype=torch.int)
    for i, text in enumerate(texts):
        tokens = [sot] + tok.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise ContextLengthError(
                    f"Input {text[:60]!r}{'...' if len(text) > 60 else ''} is {len(tokens)} tokens long, more "
                    f"than the context length {context_length}. Shorten it or pass truncate=True."
                )
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.int)
    return result


def tokenizer_for(model: Any, tokenize: Optional[Callable] = None) -> Callable[[Sequence[str]], torch.Tensor]:
    """The tokenizer an app loop uses: the given one, or :func:`tokenize` at the model's context length,
    cutting longer texts (as the apps' reference code feeds prompts and templates).

    Args:
        model: a CLIP (its ``context_length`` is read; 77 when it has none).
        tokenize: a tokenizer of the caller's (e.g. ``clip.tokenize``), used as it is.

    Returns:
        A function of a list of texts.
    """
    if tokenize is not None:
        return tokenize
    return partial(_cut, context_length=int(getattr(model, "context_length", 77)))


def _cut(texts: Sequence[str], context_length: int) -> torch.Tensor:
    return tokenize(list(texts), context_length=context_length, truncate=True)
