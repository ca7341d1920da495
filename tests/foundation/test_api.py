"""The OpenAI ``clip`` API surface: signatures, token ids, preprocessing, cheap import."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import clipag
from clipag_plugin.tokenizer import ContextLengthError


@pytest.fixture(scope="module")
def openai_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("clip")


@pytest.mark.parametrize("fn", ["load", "tokenize", "available_models"])
def test_signature_parity(openai_clip, fn):
    ours = inspect.signature(getattr(clipag, fn))
    theirs = inspect.signature(getattr(openai_clip, fn))
    assert list(ours.parameters) == list(theirs.parameters)
    for name, param in theirs.parameters.items():
        if name == "device":  # OpenAI picks cuda/cpu at import time; we pick at call time (None)
            assert ours.parameters[name].default is None
        else:
            assert ours.parameters[name].default == param.default, name


TEXTS = [
    "a photo of a cat",
    "",
    "A Diagram of the CLIP   model's   architecture!!",
    "naïve café — crème brûlée 🍰",
    "3.14 x 2, (parentheses) [brackets] <tags>",
]


def test_token_ids_match_openai(openai_clip):
    ours = clipag.tokenize(TEXTS)
    theirs = openai_clip.tokenize(TEXTS)
    assert ours.shape == (len(TEXTS), 77)
    assert ours.dtype == torch.int32
    assert torch.equal(ours.long(), theirs.long())
    assert torch.equal(clipag.tokenize("a dog", context_length=10).long(),
                       openai_clip.tokenize("a dog", context_length=10).long())


def test_overlong_text_raises_unless_truncated(openai_clip):
    text = "word " * 100
    with pytest.raises(ContextLengthError, match="truncate=True"):
        clipag.tokenize(text)
    with pytest.raises(RuntimeError):  # OpenAI's code catches RuntimeError; ours is one too
        clipag.tokenize(text)
    ours = clipag.tokenize(text, truncate=True)
    assert torch.equal(ours.long(), openai_clip.tokenize(text, truncate=True).long())
    assert ours[0, -1].item() == 49407  # still ends with end-of-text


def _images():
    rng = np.random.default_rng(0)
    yield Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), "RGB")
    yield Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L")
    yield Image.fromarray(rng.integers(0, 256, (50, 300, 4), dtype=np.uint8), "RGBA")
    yield Image.fromarray(rng.integers(0, 256, (301, 257, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("size", [224, 64])
def test_preprocess_matches_openai(openai_clip, size):
    from clipag_plugin.preprocess import build_preprocess

    ours = build_preprocess(size)
    theirs = openai_clip.clip._transform(size)
    for image in _images():
        a, b = ours(image), theirs(image)
        assert a.shape == (3, size, size)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_import_is_cheap_and_side_effect_free():
    code = (
        "import sys, clipag; "
        "heavy = [m for m in ('open_clip', 'huggingface_hub', 'torchvision', 'kornia') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import clipag pulled in {out.stdout.strip()}"


def test_available_models_lists_registry():
    names = clipag.available_models()
    assert "ViT-B/32" in names and "mini" in names and "mini-vanilla" in names
    assert len(names) == len(set(names))
