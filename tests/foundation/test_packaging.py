"""The built wheel: adapters under clipag_plugin (never a bare top-level ``adapters``), data files inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{result.stderr[-2000:]}")
    (wheel,) = out.glob("clipag_plugin-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_layout(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"clipag", "clipag_plugin"}, tops
    assert "clipag_plugin/adapters/_patch.py" in wheel_names
    assert "clipag_plugin/py.typed" in wheel_names
    assert not any(name.startswith(("tests/", "examples/", "benchmarks/")) for name in wheel_names)


def test_wheel_ships_every_repo_adapter(wheel_names):
    for path in (ROOT / "adapters").glob("*.py"):
        assert f"clipag_plugin/adapters/{path.name}" in wheel_names


def test_wheel_ships_packaged_model_files(wheel_names):
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "clipag_plugin/mini/weights").rglob("*")
                     if p.is_file()) if (ROOT / "clipag_plugin/mini/weights").is_dir() else []
    for rel in shipped:
        if rel.endswith((".json", ".safetensors")):
            assert rel in wheel_names, rel
