"""A run killed with SIGKILL and resumed ends with the same weights as an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

import clipag
from clipag_plugin.train import FinetuneConfig, finetune
from clipag_plugin.train.state import list_checkpoints, load_checkpoint

from .conftest import write_caption_folder

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    import clipag
    from clipag_plugin.train import FinetuneConfig, finetune

    model_dir, out_dir, kill_after, cfg = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])

    def on_step(step, metrics):
        if step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    model, _ = clipag.load(model_dir, device="cpu")
    finetune(model, None, FinetuneConfig(**cfg), out_dir=out_dir, progress=False, resume=True, on_step=on_step)
    """
)


def test_sigkill_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path, one_thread):
    data = write_caption_folder(tmp_path / "data", 10, corrupt=2)
    cfg = dict(data=str(data), steps=6, accum_steps=1, batch_size=4, pgd_steps=2, random_start=True, lr=1e-3,
               warmup_steps=1, checkpoint_every=3, log_every=1, num_workers=2, seed=5)
    killed = tmp_path / "killed"
    (tmp_path / "run.py").write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tiny_model_dir), str(killed), "4", json.dumps(cfg)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    # the kill came after step 4: the step-3 checkpoint is there, nothing was exported
    assert [s for s, _ in list_checkpoints(killed / "checkpoints")] == [3]
    assert not (killed / "model").exists()
    assert not any(p.name.count(".tmp") for p in (killed / "checkpoints").iterdir())

    resumed, _ = clipag.load(str(tiny_model_dir), device="cpu")
    finetune(resumed, None, FinetuneConfig(**cfg), out_dir=killed, progress=False, resume=True)
    fresh, _ = clipag.load(str(tiny_model_dir), device="cpu")
    finetune(fresh, None, FinetuneConfig(**cfg), out_dir=tmp_path / "fresh", progress=False)

    a, b = resumed.inner.state_dict(), fresh.inner.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    base, _ = clipag.load(str(tiny_model_dir), device="cpu")
    assert not torch.equal(a["visual.conv1.weight"], base.inner.state_dict()["visual.conv1.weight"])
    # the data position went into the checkpoint and the losses match step by step
    ckpt = load_checkpoint(list_checkpoints(killed / "checkpoints")[-1][1])
    assert ckpt["step"] == 6 and len(ckpt["data"]) == 1 and len(ckpt["data"][0]) == 2

    def lines(run):
        return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}

    resumed_losses, fresh_losses = lines(killed), lines(tmp_path / "fresh")
    assert all(resumed_losses[s] == fresh_losses[s] for s in (5, 6))
    assert ckpt["data"][0][0]["skipped"] + ckpt["data"][0][1]["skipped"] >= 1
