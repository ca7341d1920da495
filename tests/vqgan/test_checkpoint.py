"""Lightning checkpoints load only through the inert allow-list; malicious pickles are refused."""

from __future__ import annotations

import os
import pickle
import subprocess

import pytest
import torch

pytest.importorskip("taming")

from clipag_plugin.checkpoint import CorruptCheckpointError, UnsafeCheckpointError
from clipag_plugin.vqgan import (
    TINY_CONFIG,
    build_vqmodel,
    convert_vqgan_checkpoint,
    read_lightning_checkpoint,
)
from clipag_plugin.vqgan.checkpoint import InertObject

from .conftest import lightning_checkpoint


class _RunsShell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsPopen:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


@pytest.mark.parametrize("payload", [_RunsShell, _RunsPopen])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"quantize.embedding.weight": torch.zeros(2, 2)}, "x": payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="Nothing from it was executed"):
        read_lightning_checkpoint(path)
    assert not marker.exists()


def test_lightning_checkpoint_loads_inert_and_converts(tmp_path, tiny_vqgan):
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(tiny_vqgan), path)
    with pytest.raises(pickle.UnpicklingError):  # the plain safe loader refuses the Lightning classes
        torch.load(path, weights_only=True)
    ckpt = read_lightning_checkpoint(path)
    (key,) = ckpt["callbacks"]
    assert key is InertObject  # the ModelCheckpoint class never came back
    assert isinstance(ckpt["hyper_parameters"], InertObject)
    state = convert_vqgan_checkpoint(ckpt)
    assert not any(k.startswith("loss.") for k in state)
    assert set(state) == set(tiny_vqgan.state_dict())
    rebuilt = build_vqmodel(TINY_CONFIG, state)
    for k, v in tiny_vqgan.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k


def test_unknown_extra_class_is_named_and_can_be_allowed_inert(tmp_path):
    import fractions
    from collections import OrderedDict

    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": OrderedDict(w=torch.ones(1)), "extra": fractions.Fraction(1, 3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        read_lightning_checkpoint(path)
    ckpt = read_lightning_checkpoint(path, extra_allowed=["fractions.Fraction"])
    assert isinstance(ckpt["extra"], InertObject)


def test_truncated_file_is_corrupt(tmp_path, tiny_vqgan):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": tiny_vqgan.state_dict()}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CorruptCheckpointError):
        read_lightning_checkpoint(path)


def test_checkpoint_without_a_codebook_is_refused():
    with pytest.raises(CorruptCheckpointError, match="quantize.embedding.weight"):
        convert_vqgan_checkpoint({"state_dict": {"encoder.w": torch.zeros(1)}})
    with pytest.raises(CorruptCheckpointError, match="no VQGAN tensors"):
        convert_vqgan_checkpoint({"state_dict": {"loss.w": torch.zeros(1)}})
