"""The VQGAN registry, downloads (faked), conversion once to safetensors, cache and offline mode."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("taming")

from clipag_plugin import hub
from clipag_plugin.vqgan import (
    VQGAN_REGISTRY,
    get_vqgan_entry,
    load_vqgan,
    resolve_vqgan,
    vqgan_cache_dir,
)
from clipag_plugin.vqgan.registry import VqganHubFiles, VqganUrlFiles

from .conftest import TAMING_YAML, lightning_checkpoint


def _ckpt_bytes(model) -> bytes:
    buffer = io.BytesIO()
    torch.save(lightning_checkpoint(model), buffer)
    return buffer.getvalue()


def test_registry_has_the_three_checkpoints_as_frozen_entries():
    assert set(VQGAN_REGISTRY) == {"vqgan_imagenet_f16_16384", "vqgan_imagenet_f16_1024", "boris/vqgan_f16_16384"}
    big = get_vqgan_entry("vqgan_imagenet_f16_16384")
    assert isinstance(big.source, VqganUrlFiles) and big.n_embed == 16384 and big.factor == 16
    assert big.source.checkpoint_url.startswith("https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/")
    assert "ckpts%2Flast.ckpt" in big.source.checkpoint_url and "configs%2Fmodel.yaml" in big.source.config_url
    assert get_vqgan_entry("vqgan_imagenet_f16_1024").n_embed == 1024
    boris = get_vqgan_entry("boris/vqgan_f16_16384")
    assert isinstance(boris.source, VqganHubFiles) and boris.source.checkpoint_filename == "model.ckpt"
    with pytest.raises(dataclasses.FrozenInstanceError):
        big.n_embed = 1  # type: ignore[misc]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="vqgan_imagenet_f16_1024.*Did you mean"):
        get_vqgan_entry("vqgan_imagenet_f16_16385")


def test_offline_without_cache_says_how_to_download(offline_hub):
    with pytest.raises(hub.OfflineError, match="python -m clipag_plugin.vqgan download vqgan_imagenet_f16_16384"):
        resolve_vqgan("vqgan_imagenet_f16_16384")


@pytest.fixture
def fake_online(tmp_path, monkeypatch):
    """Offline mode off (downloads go through the fake transports below), a fresh cache root."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("CLIPAG_OFFLINE", raising=False)
    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tiny_entry(monkeypatch, name: str, **source_kwargs) -> None:
    entry = dataclasses.replace(
        VQGAN_REGISTRY["vqgan_imagenet_f16_1024"],
        name=name,
        n_embed=64,
        source=VqganUrlFiles(config_url="https://example.invalid/model.yaml",
                             checkpoint_url="https://example.invalid/last.ckpt", **source_kwargs),
    )
    monkeypatch.setitem(VQGAN_REGISTRY, name, entry)


def test_url_download_converts_once_then_loads_offline(fake_online, monkeypatch, tiny_vqgan):
    _tiny_entry(monkeypatch, "tiny-url")
    blobs = {"model.yaml": TAMING_YAML.encode(), "last.ckpt": _ckpt_bytes(tiny_vqgan)}
    calls = []

    def transport(url, dest: Path, size, progress):
        calls.append(url)
        dest.write_bytes(blobs[url.rsplit("/", 1)[1]])

    converted = resolve_vqgan("tiny-url", transport=transport, progress=False)
    assert len(calls) == 2
    assert converted.weights.suffix == ".safetensors" and converted.config.n_embed == 64
    assert json.loads((converted.folder / "config.json").read_text())["ddconfig"]["ch"] == 32
    assert resolve_vqgan("tiny-url", transport=transport).folder == converted.folder and len(calls) == 2
    monkeypatch.setenv("CLIPAG_OFFLINE", "1")
    model = load_vqgan("tiny-url")
    for k, v in tiny_vqgan.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_bad_download_is_deleted_and_raises(fake_online, monkeypatch):
    _tiny_entry(monkeypatch, "tiny-bad", config_sha256="0" * 64)

    def transport(url, dest: Path, size, progress):
        dest.write_bytes(b"model: {}")

    with pytest.raises(hub.ChecksumError, match="sha256"):
        resolve_vqgan("tiny-bad", transport=transport, progress=False)
    assert not [p for p in vqgan_cache_dir("tiny-bad").glob("*") if p.name != ".locks"]  # .locks/: download locks


def test_registry_n_embed_guards_against_a_wrong_config(fake_online, monkeypatch, tiny_vqgan):
    _tiny_entry(monkeypatch, "tiny-wrong")
    entry = dataclasses.replace(VQGAN_REGISTRY["tiny-wrong"], n_embed=16384)
    monkeypatch.setitem(VQGAN_REGISTRY, "tiny-wrong", entry)
    blobs = {"model.yaml": TAMING_YAML.encode(), "last.ckpt": _ckpt_bytes(tiny_vqgan)}
    with pytest.raises(ValueError, match="n_embed=64.*16384"):
        resolve_vqgan("tiny-wrong", transport=lambda u, d, s, p: d.write_bytes(blobs[u.rsplit("/", 1)[1]]))


def test_hub_repo_from_a_seeded_cache_offline(offline_hub, tiny_vqgan):
    from tests.conftest import seed_hub_cache

    seed_hub_cache(offline_hub, "someone/tiny-vqgan",
                   {"config.yaml": TAMING_YAML.encode(), "model.ckpt": _ckpt_bytes(tiny_vqgan)})
    model = load_vqgan("hf-hub:someone/tiny-vqgan")
    assert torch.equal(model.quantize.embedding.weight, tiny_vqgan.quantize.embedding.weight)
    assert (vqgan_cache_dir("hf-hub:someone/tiny-vqgan") / "model.safetensors").is_file()
    with pytest.raises(hub.OfflineError, match="boris/vqgan_f16_16384"):
        load_vqgan("boris/vqgan_f16_16384")


def test_local_files_as_the_reference_cli_passes_them(tmp_path, tiny_vqgan):
    (tmp_path / "model.yaml").write_text(TAMING_YAML)
    (tmp_path / "last.ckpt").write_bytes(_ckpt_bytes(tiny_vqgan))
    by_flags = load_vqgan(vqgan_config=tmp_path / "model.yaml", vqgan_checkpoint=tmp_path / "last.ckpt")
    by_folder = load_vqgan(str(tmp_path))
    assert torch.equal(by_flags.decoder.conv_out.weight, tiny_vqgan.decoder.conv_out.weight)
    assert torch.equal(by_folder.decoder.conv_out.weight, tiny_vqgan.decoder.conv_out.weight)
    with pytest.raises(ValueError, match="both"):
        load_vqgan(vqgan_config=tmp_path / "model.yaml")
