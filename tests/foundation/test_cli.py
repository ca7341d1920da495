"""``clipag models`` / ``clipag download`` and the command dispatcher."""

from __future__ import annotations

import json
import subprocess
import sys

from clipag_plugin.cli import main


def test_models_table_lists_every_name(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("ViT-B/32", "mini", "mini-vanilla", "openai-ViT-B/32", "fare4-ViT-B/32-laion2b"):
        assert name in out
    assert "robust" in out and "cached" in out and "license" in out


def test_models_json_marks_robustness_and_cache(capsys, offline_hub):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ViT-B/32"]["robust"] == "yes" and rows["ViT-B/32"]["cached"] == "no"
    assert rows["openai-ViT-B/32"]["robust"] == "NO"
    assert rows["ViT-B/32"]["source"] == "zenodo:10446026"
    # each model names its generation preset; the vanilla baselines share their robust twin's
    assert rows["mini"]["preset"] == rows["mini-vanilla"]["preset"] == "mini"
    assert rows["ViT-B/32"]["preset"] == rows["openai-ViT-B/32"]["preset"] == "notebook"
    assert rows["mini"]["preset_settings"]["param"] == "multires"


def test_models_table_lists_the_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "Generation presets" in out and "notebook" in out and "param=multires" in out


def test_download_offline_reports_and_fails(capsys, offline_hub):
    assert main(["download", "fare4-ViT-B/32-laion2b"]) == 1
    err = capsys.readouterr().err
    assert "chs20/FARE4-ViT-B-32-laion2B-s34B-b79K" in err
    assert main(["download", "nonsense-model"]) == 1
    assert "Unknown model 'nonsense-model'" in capsys.readouterr().err


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert main([]) == 0
    assert "finetune" in capsys.readouterr().out


def test_python_dash_m_clipag_runs():
    out = subprocess.run([sys.executable, "-m", "clipag", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("clipag-plugin ")


def test_download_knows_the_apps_auxiliary_weights(capsys, offline_hub):
    assert main(["download", "vgg19"]) == 1
    assert "timm/vgg19.tv_in1k" in capsys.readouterr().err
    assert main(["download", "vqgan_imagenet_f16_16384"]) == 1
    assert "offline mode is on" in capsys.readouterr().err


HELP_PAGES = [["demo"], ["models"], ["download"], ["generate"], ["compare"], ["gmm"], ["gmm", "fit"],
              ["gmm", "sample"], ["finetune"], ["eval"], ["run"], ["ui"]]


def _help(capsys, command: list[str]) -> str:
    try:
        main([*command, "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    return capsys.readouterr().out


def test_every_help_page_ends_with_real_invocations(capsys):
    import shlex

    for command in HELP_PAGES:
        page = _help(capsys, command)
        assert "\nexamples:\n" in page, f"clipag {' '.join(command)} --help has no examples"
        examples = [line.strip() for line in page.split("\nexamples:\n", 1)[1].splitlines()
                    if line.strip().startswith(("clipag ", "torchrun "))]
        assert len(examples) >= 2, f"clipag {' '.join(command)}: fewer than two examples"
        for example in examples:
            words = shlex.split(example.split("  #")[0])
            if words[0] == "torchrun":
                words = ["clipag", *words[words.index("clipag") + 1 :]]
            # every example names a real subcommand (and the one it documents, or its neighbour)
            assert words[1] in {"demo", "models", "download", "generate", "compare", "gmm", "finetune", "eval", "run",
                                "ui"}


def test_common_flags_mean_the_same_everywhere(capsys):
    pages = {" ".join(c): _help(capsys, c) for c in HELP_PAGES}
    for command in ("demo", "generate", "compare", "finetune", "eval", "run", "ui"):
        assert "--quiet" in pages[command], f"clipag {command} has no --quiet"
        assert "--device" in pages[command], f"clipag {command} has no --device"
    for command in ("generate", "compare", "finetune", "eval", "run"):
        assert "--model" in pages[command], f"clipag {command} has no --model"
    for command in ("compare", "eval"):
        assert "--models" in pages[command], f"clipag {command} has no --models"
    for command in ("demo", "generate", "compare", "gmm fit", "gmm sample", "finetune"):
        assert "--seed" in pages[command] and "--out" in pages[command], f"clipag {command}: --seed/--out"


def test_top_level_help_lists_every_command_with_one_line(capsys):
    from clipag_plugin.cli import COMMANDS

    assert main(["--help"]) == 0
    page = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name:<10} {summary}" in page
    assert "examples:" in page


def test_models_table_fits_the_terminal_unless_wide(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    assert all(len(line.rstrip()) <= 80 for line in table) and table[0].split()[:2] == ["name", "robust"]
    assert "not shown, to fit the terminal: " in out and "clipag models --wide" in out
    assert main(["models", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "verified by" in wide.splitlines()[0] and "not shown" not in wide
