"""The prepared GPU check stays runnable: its --quick mode on the CPU covers every section."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

GPU_CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_gpu_check_quick_runs_every_section_on_the_cpu(tmp_path, monkeypatch, capsys):
    from clipag_plugin.synthesis import accel

    monkeypatch.setattr(accel, "COMPILE_BACKEND", accel.COMPILE_BACKEND)  # restored after the check sets it
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "report.json"
    report = module.main(["--quick", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(report["rows"], default=str))
    sections = {row["section"] for row in report["rows"]}
    assert sections == {"load", "generate", "finetune", "clipdraw", "vqgan", "tests"}
    failed = [row for row in report["rows"] if not row["ok"]]
    assert not failed, failed
    generate = [row for row in report["rows"] if row["section"] == "generate"]
    assert len(generate) == 8 and all(row["seconds"] > 0 for row in generate)
    assert any(row["section"] == "finetune" and row["images/s"] > 0 for row in report["rows"])
    assert any("pydiffvg interface" in row["case"] for row in report["rows"] if row["section"] == "clipdraw")
    out = capsys.readouterr().out
    assert "| generate | plain, compiled auto (fp32 compute, fp32 weights; loaded float32)" in out
    assert "| generate | recipe, bf16, fp32 weights (bf16 compute, fp32 weights" in out
