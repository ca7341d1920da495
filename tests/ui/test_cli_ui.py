"""``clipag ui`` on the command line: its help, bad flags, and the missing [ui] extra."""

from __future__ import annotations

import sys

from clipag_plugin.cli import main


def test_without_the_extra_it_names_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["ui", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'clipag-plugin[ui]'" in err and "Traceback" not in err


def test_bad_limits_are_one_line(capsys):
    assert main(["ui", "--max-steps", "0"]) == 2
    assert "--max-steps 0 must be at least 1" in capsys.readouterr().err
