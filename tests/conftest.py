"""Shared fixtures: tiny random open_clip models pushed through the real loading code, offline."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: tests never download
torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps results identical across hosts

# A ViT CLIP that builds in milliseconds (open_clip model_cfg).
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# A ModifiedResNet CLIP (the mini world's tower family).
TINY_RN_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def make_open_clip_model(cfg: dict = TINY_CFG, seed: int = 0) -> torch.nn.Module:
    """A tiny random open_clip CLIP (eval mode)."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**json.loads(json.dumps(cfg))).eval()


def save_open_clip_folder(model: torch.nn.Module, folder: Path, cfg: dict = TINY_CFG, preprocess_cfg=None) -> Path:
    """Write ``model`` in open_clip Hub layout (config JSON + safetensors) into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": cfg}
    if preprocess_cfg:
        config["preprocess_cfg"] = preprocess_cfg
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def seed_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "0" * 40) -> Path:
    """Lay files out as huggingface_hub's cache does (refs/main + snapshots/<commit>/...)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, with huggingface_hub in offline mode pointed at it."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "clipag-cache"))
    return cache


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    """A folder in open_clip layout holding a tiny random ViT CLIP."""
    return save_open_clip_folder(make_open_clip_model(), tmp_path / "tiny-clip")


@pytest.fixture
def tiny_clip(tiny_model_dir):
    """``(model, preprocess)`` of the tiny ViT CLIP, loaded through ``clipag.load``."""
    import clipag

    return clipag.load(str(tiny_model_dir), device="cpu")


@pytest.fixture
def tiny_rn_clip(tmp_path):
    """``(model, preprocess)`` of a tiny ModifiedResNet CLIP at 64 px, through ``clipag.load``."""
    import clipag

    folder = save_open_clip_folder(make_open_clip_model(TINY_RN_CFG), tmp_path / "tiny-rn", TINY_RN_CFG)
    return clipag.load(str(folder), device="cpu")


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@contextlib.contextmanager
def example_module(app: str, module_name: str):
    """Import ``examples/<app>/<app>.py`` by path as ``module_name`` (as a user's script would be)."""
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / app / f"{app}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(module_name, None)


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test starts and ends with an empty model cache (generate keeps models by name)."""
    from clipag_plugin.synthesis.api import clear_model_cache

    clear_model_cache()
    yield
    clear_model_cache()
