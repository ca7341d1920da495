"""`clipag run APP -- notebook.ipynb`: a notebook's code cells, unmodified, headless, on clipag.

tests/apps/scripts/clipdraw_notebook.ipynb follows the CLIPDraw notebook's shape (install cell,
Colab magics, /content paths, display helpers, a helper-package import, `import clip`/`pydiffvg`,
NUM_AUGS inside the loop). The smaller notebooks here are built per test with nbformat."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("IPython")
nbformat = pytest.importorskip("nbformat")

from clipag_plugin.adapters import _cells, _installs  # noqa: E402
from clipag_plugin.adapters.runner import NotebookCellError, RunInputError, parse_overrides, run  # noqa: E402
from PIL import Image  # noqa: E402

from clipag_plugin.cli import main as clipag_main  # noqa: E402

NOTEBOOK = Path(__file__).with_name("scripts") / "clipdraw_notebook.ipynb"
DRAWING_CELLS = "Imports and Notebook Utilities,Load CLIP,Curve Optimizer"


@pytest.fixture
def notices(caplog):
    caplog.set_level(logging.INFO, logger="clipag_plugin.adapters")
    return caplog


def _notebook_file(tmp_path: Path, *cells: str, name: str = "nb.ipynb") -> Path:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebook = new_notebook(cells=[new_markdown_cell("# a notebook"), *(new_code_cell(c) for c in cells)])
    path = tmp_path / name
    nbformat.write(notebook, str(path))
    return path


# --- the CLIPDraw-shaped notebook ---------------------------------------------------------------


def test_clipdraw_notebook_draws_with_one_image_per_step(offline, tmp_path, notices):
    cwd, path = os.getcwd(), sys.path[:]
    work = tmp_path / "work"
    report = run("clipdraw", NOTEBOOK, cells=DRAWING_CELLS, overrides=["args.num_iter=3"], workdir=work,
                 fallback=offline)
    # 3 steps (args.num_iter as overridden), NUM_AUGS rebound to 1 inside the loop
    assert report.encoder_calls == 3 and report.encoder_images == 3
    assert report.hooks_fired["NUM_AUGS"] == 3 and report.hooks_fired["args.num_iter"] == 2
    assert report.models == [offline]
    assert report.cells == ['cell 2 "Imports and Notebook Utilities"', 'cell 3 "Load CLIP"', 'cell 4 "Curve Optimizer"']
    # Colab's /content is the working folder; show_img went through IPython's display
    assert Image.open(work / "res" / "iter_0.png").size == (224, 224)
    assert (work / "res" / "final.svg").read_text().startswith("<svg")
    shown = Image.open(work / "display-0001-cell4.jpeg")
    assert shown.size == (224, 224) and shown.format == "JPEG"
    written = {Path(p).relative_to(work.resolve()).as_posix() for p in report.files}
    assert written == {"res/iter_0.png", "res/final.svg", "display-0001-cell4.jpeg"}
    assert "wrote 3 files in" in report.summary() and "--set args.num_iter=3 (applied x2)" in report.summary()
    # one notice: the chosen cells' shell lines, what the notebook installs, what is missing
    text = notices.text
    assert 'cell 2 "Imports and Notebook Utilities": !nvidia-smi -L' in text
    assert "!pip install svgwrite" not in text  # the install cell did not run
    missing = [name for name in ("svgwrite", "tqdm", "clipag-test-not-a-real-package")
               if importlib.util.find_spec(name.replace("-", "_")) is None]
    assert "tqdm" not in missing and f"not installed here: {', '.join(missing)} (pip install" in text
    assert "installs svgwrite, tqdm, clipag-test-not-a-real-package, CLIP and clones diffvg" in text
    assert "provided by clipag: CLIP" in text and "diffvg (import pydiffvg" in text
    assert "%tensorflow_version 2.x: a Colab-only magic, skipped" in text
    assert "%cd /content/diffvg/apps/: no folder" in text
    assert os.getcwd() == cwd and sys.path == path
    assert "google.colab" not in sys.modules


def test_clipdraw_notebook_with_tricks_on_shows_four_copies(offline, tmp_path):
    report = run("clipdraw", NOTEBOOK, cells="2-4", overrides={"args.num_iter": 2}, workdir=tmp_path / "w",
                 fallback=offline, tricks="on")
    assert report.encoder_calls == 2 and report.encoder_images == 8


def test_cli_runs_the_notebook_with_options_after_its_path(offline, tmp_path, capsys):
    work = tmp_path / "w"
    rc = clipag_main(["run", "clipdraw", "--fallback", offline, "--", str(NOTEBOOK), "--cells", DRAWING_CELLS,
                      "--set", "args.num_iter=2", "--workdir", str(work)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "ran 3 cells" in captured.err and "2 images reached the image tower in 2 calls" in captured.err
    assert "display-0001-cell4.jpeg" in captured.err and (work / "res" / "iter_0.png").is_file()
    assert "render loss:" in captured.out  # the notebook's own prints


def test_default_working_folder_is_beside_the_notebook(offline, tmp_path):
    notebook = _notebook_file(tmp_path, "open('/content/out.txt', 'w').write('x')", name="mine.ipynb")
    report = run("clipdraw", notebook, fallback=offline)
    assert (tmp_path / "mine_run" / "out.txt").read_text() == "x"
    assert report.workdir == str(tmp_path / "mine_run")


def test_list_cells_names_numbers_and_titles(capsys):
    assert clipag_main(["run", "clipdraw", "--list-cells", "--", str(NOTEBOOK)]) == 0
    out = capsys.readouterr().out
    assert "5 code cells" in out
    assert "  4  Curve Optimizer" in out and "%cd /content/diffvg/apps/" in out


# --- choosing cells ---------------------------------------------------------------------------


def test_cells_by_number_range_and_title():
    cells = _cells.read_cells(NOTEBOOK)
    assert [c.title for c in cells] == ["Pre Installation", "Imports and Notebook Utilities", "Load CLIP",
                                        "Curve Optimizer", "Video Renderer"]
    pick = _cells.select_cells
    assert [c.number for c in pick(cells, "4, 2-3")] == [2, 3, 4]  # notebook order
    assert [c.number for c in pick(cells, "load clip,5")] == [3, 5]
    assert [c.number for c in pick(cells, None)] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="no cell has that number or #@title") as info:
        pick(cells, "Pixel Optimizer")
    assert "Curve Optimizer" in str(info.value)  # the message lists the cells
    with pytest.raises(ValueError, match="code cells 1 to 5"):
        pick(cells, "4-7")


def test_bad_notebook_options_are_input_errors(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("x = 1\n")
    with pytest.raises(RunInputError, match="--cells and --workdir are for notebooks"):
        run("clipdraw", script, cells="1")
    with pytest.raises(RunInputError, match="no cell has that number"):
        run("clipdraw", NOTEBOOK, cells="Nope")
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert clipag_main(["run", "clipdraw", "--", str(bad)]) == 2
    assert "is not a readable notebook" in capsys.readouterr().err


def test_missing_ipython_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "IPython" else real(name, *a))
    with pytest.raises(ImportError, match=r"clipag-plugin\[notebook\]"):
        _cells.read_cells(NOTEBOOK)


# --- errors ------------------------------------------------------------------------------------


def test_an_error_names_the_cell_its_title_and_line(offline, tmp_path, capsys):
    notebook = _notebook_file(tmp_path, "#@title Setup\nx = 1\n", "#@title Boom\ny = 2\nz = y / (x - 1)\n",
                              "print('never')\n")
    with pytest.raises(NotebookCellError) as info:
        run("clipdraw", notebook, workdir=tmp_path / "w", fallback=offline)
    err = info.value
    assert err.cell.number == 2 and err.line == 3
    assert 'cell 2 "Boom", line 3: ZeroDivisionError' in str(err) and "--cells 1,3" in str(err)
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert 'File "nb.ipynb [cell 2: Boom]", line 3' in err.user_traceback
    assert "z = y / (x - 1)" in err.user_traceback  # the user's code, not the runner's
    assert "_notebook.py" not in err.user_traceback

    assert clipag_main(["run", "clipdraw", "--fallback", offline, "--", str(notebook), "--workdir",
                        str(tmp_path / "w")]) == 1
    captured = capsys.readouterr()
    assert "z = y / (x - 1)" in captured.err and "the notebook stopped in cell 2" in captured.err
    assert "never" not in captured.out


def test_a_syntax_error_names_its_cell(offline, tmp_path):
    notebook = _notebook_file(tmp_path, "x = 1\n", "#@title Typo\nif x\n    pass\n")
    with pytest.raises(NotebookCellError, match='cell 2 "Typo", line 2: SyntaxError'):
        run("clipdraw", notebook, workdir=tmp_path / "w", fallback=offline)


# --- what a kernel or Colab provides -------------------------------------------------------------


def test_displays_are_numbered_files(offline, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    notebook = _notebook_file(
        tmp_path,
        "%matplotlib inline\nfrom PIL import Image\nImage.new('RGB', (8, 8), 'red')",          # last expression
        "from PIL import Image\nImage.new('RGB', (8, 8), 'blue');",                            # ; hides it
        "from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'), 42)",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()\nplt.figure()\nplt.plot([1, 2])",
    )
    work = tmp_path / "w"
    report = run("clipdraw", notebook, workdir=work, fallback=offline)
    names = sorted(p.name for p in work.glob("display-*"))
    assert names == ["display-0001-cell1.png", "display-0002-cell3.html", "display-0003-cell4.png",
                     "display-0004-cell4.png"]  # show(), then the figure left open at the cell's end
    assert Image.open(work / "display-0001-cell1.png").getpixel((0, 0)) == (255, 0, 0)
    assert "<b>hi</b>" in (work / "display-0002-cell3.html").read_text()
    assert "42" in capsys.readouterr().out  # plain values print, as in a terminal
    assert Image.open(work / "display-0003-cell4.png").size[0] > 100
    assert len(report.files) == 4


def test_magics_behave_as_in_ipython(offline, tmp_path, notices):
    notebook = _notebook_file(
        tmp_path,
        "%env CLIPAG_NB_TEST=yes\nimport os\nseen = os.environ['CLIPAG_NB_TEST']\nhere = %pwd",
        "%%capture out\nprint('hidden')",
        "%%writefile /content/helper_mod.py\nVALUE = 7\n",
        "import helper_mod\nvalue = helper_mod.VALUE\nlisting = !ls\n%load_ext autoreload\n%frobnicate now",
        "%%bash\necho not run\n",
        "%%time\ntimed = 1 + 1",
    )
    work = tmp_path / "w"
    report = run("clipdraw", notebook, workdir=work, fallback=offline, keep_namespace=True)
    ns = report.namespace
    assert ns["seen"] == "yes" and "CLIPAG_NB_TEST" not in os.environ  # the environment is restored
    assert ns["here"] == str(work.resolve())
    assert ns["out"].stdout == "hidden\n"
    assert ns["value"] == 7 and ns["listing"] == [] and ns["timed"] == 2
    assert "helper_mod" not in sys.modules  # modules of the working folder are forgotten afterwards
    text = notices.text
    assert "shell lines are not run" in text and "!ls" in text and "!echo not run" in text
    assert "%frobnicate now: clipag run does not support this magic; skipped" in text


def test_content_paths_map_into_the_working_folder(offline, tmp_path):
    notebook = _notebook_file(
        tmp_path,
        "import os\nos.makedirs('/content/out', exist_ok=True)\n"
        "for i in range(2):\n    open(f'/content/out/{i}.txt', 'w').write(str(i))\n"
        "untouched = '/contents/x'\nmiddle = f'{i}/content/y'\nbare = '/content'",
    )
    work = tmp_path / "w"
    report = run("clipdraw", notebook, workdir=work, fallback=offline, keep_namespace=True)
    assert (work / "out" / "1.txt").read_text() == "1"
    assert report.namespace["untouched"] == "/contents/x" and report.namespace["middle"] == "1/content/y"
    assert report.namespace["bare"] == str(work.resolve())


def test_google_colab_is_stood_in_for(offline, tmp_path, notices):
    notebook = _notebook_file(
        tmp_path,
        "from google.colab import drive, files\nfrom google.colab.patches import cv2_imshow\nimport numpy as np\n"
        "drive.mount('/content/drive')\nfiles.download('/content/out.png')\n"
        "cv2_imshow(np.zeros((4, 4, 3), np.uint8) + np.array([255, 0, 0], np.uint8))",
    )
    work = tmp_path / "w"
    run("clipdraw", notebook, workdir=work, fallback=offline)
    assert (work / "drive").is_dir()
    assert Image.open(work / "display-0001-cell1.png").getpixel((0, 0)) == (0, 0, 255)  # BGR read as OpenCV's
    assert "google.colab is stood in for" in notices.text
    assert f"no Google Drive here; the folder {(work / 'drive').resolve()} stands in for it" in notices.text
    assert f"the file is {(work / 'out.png').resolve()}" in notices.text
    assert "google.colab" not in sys.modules


@pytest.mark.parametrize("tricks, per_step", [("off", 1), ("on", 8)])
def test_a_vqgan_notebook_gets_the_cutout_switches_and_argparse_overrides(offline, tiny_vqgan_files, tmp_path,
                                                                           tricks, per_step):
    """generate.py's code split into two cells, its argparse `args` shortened by --set."""
    lines = (Path(__file__).with_name("scripts") / "vqgan_generate.py").read_text().splitlines(True)
    split = next(i for i, line in enumerate(lines) if line.startswith("from PIL import Image"))
    notebook = _notebook_file(tmp_path, "".join(lines[:split]), "".join(lines[split:]))
    config, checkpoint = tiny_vqgan_files
    out = tmp_path / "out.png"
    report = run("vqgan-clip", notebook, ["-i", "5", "-cuts", "8", "-conf", str(config), "-ckpt", str(checkpoint),
                                          "-o", str(out)], fallback=offline, tricks=tricks,
                 overrides=["args.max_iterations=2"], workdir=tmp_path / "w")
    assert Image.open(out).size == (64, 64)
    assert report.encoder_calls == 2 and report.encoder_images == 2 * per_step
    assert report.hooks_fired["args.max_iterations"] == 1


# --- the install notice ---------------------------------------------------------------------------


def test_what_a_shell_line_installs():
    installed_by = _installs.installed_by
    assert installed_by("pip install -q torch==1.7.1{suffix} -f https://x/y.html ftfy regex") == (
        ["torch", "ftfy", "regex"], [])
    assert installed_by("python -m pip install git+https://github.com/openai/CLIP.git --no-deps") == (["CLIP"], [])
    assert installed_by("git clone https://github.com/BachiLi/diffvg && cd diffvg && pip install -r req.txt x") == (
        ["x"], ["diffvg"])
    assert installed_by("pip install -e . 'taming-transformers>=0.0.1'") == (["taming-transformers"], [])
    assert installed_by("nvidia-smi -L") == ([], [])


# --- --set on scripts too -----------------------------------------------------------------------


def test_overrides_reach_names_attributes_and_argparse_args(offline, tmp_path, caplog):
    script = tmp_path / "s.py"
    script.write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--steps', type=int, default=100)\n"
        "args = p.parse_args()\nsteps = args.steps\nN = 4\nfor t in range(2):\n    N = 4\n"
    )
    report = run("clipdraw", script, ["--steps", "50"], fallback=offline, keep_namespace=True,
                 overrides=["args.steps=7", "N=1", "nowhere=3"])
    assert report.namespace["steps"] == 7 and report.namespace["N"] == 1
    assert report.hooks_fired["N"] == 3 and report.hooks_fired["args.steps"] == 1
    assert report.unapplied == ["nowhere"] and "--set nowhere=3 was never applied" in caplog.text
    assert "nowhere=3 (NEVER applied)" in report.summary()


def test_parse_overrides():
    assert parse_overrides(["args.num_iter=20", "lr=0.5", "on=True", "prompt=a red fox", "xs=[1, 2]"]) == {
        "args.num_iter": 20, "lr": 0.5, "on": True, "prompt": "a red fox", "xs": [1, 2]}
    with pytest.raises(RunInputError, match="NAME=VALUE"):
        parse_overrides(["args.num_iter"])
    with pytest.raises(RunInputError, match="NAME=VALUE"):
        parse_overrides(["1x=2"])


# --- notebooks in the repository ----------------------------------------------------------------


def test_notebooks_in_the_repository_have_no_outputs():
    root = Path(__file__).resolve().parents[2]
    notebooks = [p for p in root.rglob("*.ipynb") if ".venv" not in p.parts and "build" not in p.parts
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    assert any(p.name == "quickstart.ipynb" for p in notebooks)
    for path in notebooks:
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path}: strip the outputs"


# --- the quickstart notebook, top to bottom --------------------------------------------------------


def test_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    """Executed in a real kernel (nbclient), offline, on the CPU: any cell error fails the test."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = Path(__file__).resolve().parents[2]
    notebook = nbformat.read(str(root / "notebooks" / "quickstart.ipynb"), as_version=4)
    monkeypatch.setenv("CLIPAG_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in cell.outputs) for cell in code)
    shown = [cell for cell in code if any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert len(shown) == 4  # demo, generate, CLIPDraw and CLIPStyler each end with a picture
    assert "mini (robust) against mini-vanilla (plain) on cpu" in "".join(o.get("text", "") for o in code[0].outputs)
    assert (tmp_path / "clipag-demo.png").is_file()


def test_the_readme_badge_opens_the_quickstart_notebook():
    import re

    root = Path(__file__).resolve().parents[2]
    badge = re.search(r"\(https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/([^)]+)\)",
                      (root / "README.md").read_text())
    assert badge and (root / badge.group(1)).is_file() and badge.group(1) == "notebooks/quickstart.ipynb"


def test_arguments_after_the_notebook_reach_it_unless_they_are_clipags(offline, tmp_path, capsys):
    notebook = _notebook_file(tmp_path, "import sys\nprint('ARGV', sys.argv[1:])", "print('second cell')")
    rc = clipag_main(["run", "clipdraw", "--fallback", offline, "--", str(notebook), "--cut", "3", "--cells", "1",
                      "--workdir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    assert rc == 0 and "ARGV ['--cut', '3']" in out and "second cell" not in out
