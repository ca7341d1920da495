"""The official CLIPAG checkpoint path (download, verify, convert) and safe unpickling."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

import clipag
from clipag_plugin import checkpoint, hub, registry
from clipag_plugin.registry import ModelEntry, UrlFile
from tests.conftest import TINY_CFG, make_open_clip_model


def _fake_release(tmp_path, seed=0) -> tuple[bytes, torch.nn.Module]:
    """A checkpoint laid out like CLIPAG_ViTB32.pt: open_clip training state with numpy scalars."""
    model = make_open_clip_model(seed=seed)
    state = {
        "epoch": 10,
        "name": "clipag",
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(2e-5), "step": np.int64(7)}]},
        "best_loss": np.float32(0.25),
    }
    path = tmp_path / "release.pt"
    torch.save(state, path)
    return path.read_bytes(), model


@pytest.fixture
def fake_zenodo(tmp_path, monkeypatch):
    """Register a UrlFile model whose transport serves fake bytes; returns (entry, calls, payloads)."""
    data, model = _fake_release(tmp_path)
    entry = ModelEntry(
        name="clipag-test",
        source=UrlFile(url="https://example.invalid/CLIPAG_test.pt", filename="CLIPAG_test.pt",
                       size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), architecture=TINY_CFG),
        architecture="tiny", robust=True, threat_model="L2", finetuned_from="-", license="MIT",
        size_bytes=len(data), description="test",
    )
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIPAG_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls: list[str] = []
    payloads = [data]

    def transport(url, dest, expected_size, progress):
        calls.append(url)
        dest.write_bytes(payloads[min(len(calls), len(payloads)) - 1])

    monkeypatch.setattr(hub, "_http_stream", transport)
    return entry, calls, payloads, model


def test_numpy_scalars_are_allowed_and_module_prefix_stripped(tmp_path):
    data, model = _fake_release(tmp_path)
    raw = checkpoint.read_checkpoint(tmp_path / "release.pt")
    assert raw["best_loss"] == np.float32(0.25)
    state = checkpoint.convert_clipag_checkpoint(raw)
    assert set(state) == set(model.state_dict())
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_download_verify_convert_and_load(fake_zenodo, tmp_path):
    entry, calls, _, reference = fake_zenodo
    model, _ = clipag.load("clipag-test", device="cpu")
    for key, value in reference.state_dict().items():
        assert torch.equal(model.inner.state_dict()[key], value)
    cache = tmp_path / "cache"
    assert (cache / "CLIPAG_test.safetensors").is_file()
    assert len(calls) == 1
    clipag.load("clipag-test", device="cpu")  # second load: from the converted cache, no download
    assert len(calls) == 1


def test_bad_cached_file_is_downloaded_again_once(fake_zenodo, tmp_path):
    entry, calls, payloads, _ = fake_zenodo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "CLIPAG_test.pt").write_bytes(b"x" * entry.source.size_bytes)  # right size, wrong hash
    path = hub.fetch_url_file(entry.source, entry.name)
    assert len(calls) == 1
    assert hub.sha256_of(path) == entry.source.sha256


def test_mismatched_download_raises_and_keeps_no_new_file(fake_zenodo, tmp_path):
    entry, calls, payloads, _ = fake_zenodo
    cache = tmp_path / "cache"
    cache.mkdir()
    bad_cached = b"y" * entry.source.size_bytes
    (cache / "CLIPAG_test.pt").write_bytes(bad_cached)  # bad cached copy
    payloads[0] = b"z" * entry.source.size_bytes  # and the server sends bad bytes too
    with pytest.raises(hub.ChecksumError) as info:
        clipag.load("clipag-test", device="cpu")
    message = str(info.value)
    assert entry.source.sha256 in message and hashlib.sha256(payloads[0]).hexdigest() in message
    assert str(cache / "CLIPAG_test.pt") in message
    assert len(calls) == 1  # re-downloaded exactly once, then gave up
    # the bad download is gone; the corrupt cached copy is only ever replaced by a verified one
    assert sorted(p.name for p in cache.iterdir() if p.name != ".locks") == ["CLIPAG_test.pt"]
    assert (cache / "CLIPAG_test.pt").read_bytes() == bad_cached


def test_short_download_is_kept_for_resuming(fake_zenodo, tmp_path):
    entry, calls, payloads, _ = fake_zenodo
    payloads[0] = payloads[0][: len(payloads[0]) // 2]
    with pytest.raises(hub.IncompleteDownloadError, match="resumes"):
        clipag.load("clipag-test", device="cpu")
    partial = tmp_path / "cache" / "CLIPAG_test.pt.part"
    assert partial.stat().st_size == len(payloads[0])
    assert not (tmp_path / "cache" / "CLIPAG_test.pt").exists()


def test_offline_without_cache_names_the_fix(fake_zenodo, monkeypatch):
    monkeypatch.setenv("CLIPAG_OFFLINE", "1")
    with pytest.raises(hub.OfflineError, match="clipag download clipag-test"):
        clipag.load("clipag-test", device="cpu")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil(marker)}, path)
    with pytest.raises(checkpoint.UnsafeCheckpointError, match="allow-list"):
        checkpoint.read_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(checkpoint.UnsafeCheckpointError):
        clipag.load(str(path), device="cpu")
    assert not marker.exists()


def test_truncated_file_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "half.pt"
    torch.save({"state_dict": make_open_clip_model().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(checkpoint.CorruptCheckpointError, match="truncated or corrupt"):
        checkpoint.read_checkpoint(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(checkpoint.CorruptCheckpointError):
        checkpoint.read_checkpoint(bad)
