"""`clipag run`: the original programs, unmodified, on clipag: offline, on the CPU, with the encoder
images per step counted with the tricks off and on. The scripts in tests/apps/scripts/ follow the
upstream files they name (the CLIPDraw notebook, nerdyrodent's generate.py, train_CLIPstyler.py)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from clipag_plugin.adapters import _script
from clipag_plugin.adapters.runner import run
from PIL import Image

from clipag_plugin.cli import main as clipag_main

SCRIPTS = Path(__file__).with_name("scripts")


# --- the rebinding pass ------------------------------------------------------------------------


def test_rebinding_reaches_module_level_names_in_blocks_but_not_functions(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\n"
        "device = 'cuda'\n"
        "seen = []\n"
        "for t in range(3):\n"
        "    N = 4\n"
        "    seen.append(N)\n"
        "def f():\n"
        "    N = 7\n"
        "    return N\n"
        "class MakeCutouts:\n"
        "    pass\n"
        "inner = f()\n"
        "argv = sys.argv[1:]\n"
    )
    calls = []

    def hook(value):
        calls.append(value)
        return 1

    ns = _script.run_script(script, ["--x", "1"], {"N": hook, "device": lambda v: "cpu",
                                                   "MakeCutouts": lambda cls: "replaced"})
    assert ns["seen"] == [1, 1, 1] and calls == [4, 4, 4]  # inside the loop, every time
    assert ns["inner"] == 7  # a function's local of the same name is left alone
    assert ns["device"] == "cpu" and ns["MakeCutouts"] == "replaced"
    assert ns["argv"] == ["--x", "1"] and sys.argv[0] != str(script)  # argv restored


def test_tracebacks_point_at_the_users_file_and_line(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("x = 1\n\n\nraise RuntimeError('here')\n")
    with pytest.raises(RuntimeError) as info:
        _script.run_script(script, [], {"x": lambda v: v})
    frames = [f for f in info.traceback if str(f.path) == str(script)]
    assert frames and frames[-1].lineno + 1 == 4


def test_bound_names_of_each_statement_kind():
    tree = ast.parse("a, (b, *c) = 1, (2, 3)\nd: int = 1\ne += 1\nimport f.g as h\nfrom i import j\n"
                     "def k(): pass\nclass L: pass\n")
    names = set().union(*(_script.bound_names(s) for s in tree.body))
    assert names == {"a", "b", "c", "d", "e", "h", "j", "k", "L"}


# --- the three programs ------------------------------------------------------------------------


def test_clipdraw_notebook_runs_with_one_image_per_step(offline, tmp_path, caplog):
    report = run("clipdraw", SCRIPTS / "clipdraw_notebook.py", [str(tmp_path)], fallback=offline, tricks="off")
    assert Image.open(tmp_path / "iter_final.png").size == (224, 224)
    assert (tmp_path / "final.svg").read_text().startswith("<svg")
    assert report.encoder_images == 3 and report.encoder_calls == 3  # 3 steps, NUM_AUGS rebound to 1
    assert report.models == [offline]
    assert "no CUDA" in caplog.text and "not available offline" in caplog.text
    assert "pydiffvg" not in sys.modules or not getattr(sys.modules["pydiffvg"], "__clipag_compat__", False)


def test_clipdraw_notebook_with_tricks_on_shows_four_copies(offline, tmp_path):
    report = run("clipdraw", SCRIPTS / "clipdraw_notebook.py", [str(tmp_path)], fallback=offline, tricks="on")
    assert report.encoder_images == 12 and report.encoder_calls == 3


@pytest.mark.parametrize("tricks, per_step", [("off", 1), ("on", 8)])
def test_vqgan_generate_runs_with_the_cutout_switches(offline, tiny_vqgan_files, tmp_path, tricks, per_step):
    config, checkpoint = tiny_vqgan_files
    out = tmp_path / "out.png"
    report = run("vqgan-clip", SCRIPTS / "vqgan_generate.py",
                 ["-p", "a red circle", "-i", "3", "-cuts", "8", "-conf", str(config), "-ckpt", str(checkpoint),
                  "-o", str(out)], fallback=offline, tricks=tricks)
    assert Image.open(out).size == (64, 64)
    assert report.encoder_images == 3 * per_step and report.encoder_calls == 3


@pytest.fixture(scope="session")
def vgg19_hub_file(tmp_path_factory):
    """torchvision's VGG19 layout, random weights, as the Hub file clipag reads (timm's key names)."""
    from safetensors.torch import save_file

    from clipag_plugin import vgg

    torch.manual_seed(0)
    features = vgg.vgg19_features()
    path = tmp_path_factory.mktemp("vgg") / "model.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("tricks, per_step", [("off", 2), ("on", 9)])
def test_clipstyler_train_runs_offline_with_the_hub_vgg(offline, offline_hub, vgg19_hub_file, tmp_path, tricks,
                                                         per_step, caplog):
    from tests.conftest import seed_hub_cache

    seed_hub_cache(offline_hub, "timm/vgg19.tv_in1k", {"model.safetensors": vgg19_hub_file.read_bytes()})
    out = tmp_path / "styled.png"
    report = run("clipstyler", SCRIPTS / "train_clipstyler.py", ["--num_crops", "8", "--out", str(out)],
                 fallback=offline, tricks=tricks)
    assert Image.open(out).size == (64, 64)
    # the source image once, then per step: the patch crops (8 with tricks on, 1 off) + the global pass
    assert report.encoder_images == 1 + 2 * per_step
    assert "no CUDA" in caplog.text  # the script's hard-coded device='cuda'
    assert "resized" in caplog.text  # 224 px inputs for a model that reads another size


def test_clipstyler_without_cached_vgg_is_one_line(offline, tmp_path, capsys):
    rc = clipag_main(["run", "clipstyler", "--fallback", offline, "--", str(SCRIPTS / "train_clipstyler.py"),
                      "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "pretrained VGG19" in err and "python -m clipag_plugin.vgg" in err
    assert "Traceback" not in err


def test_cli_reports_the_model_and_the_tricks(offline, tmp_path, capsys):
    rc = clipag_main(["run", "clipdraw", "--fallback", offline, "--", str(SCRIPTS / "clipdraw_notebook.py"),
                      str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0 and "tricks off: augmentation" in err and "3 images reached the image tower in 3 calls" in err
    assert "ran " + offline in err


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert clipag_main(["run", "clipdraw", "--", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    if not torch.cuda.is_available():
        script = tmp_path / "s.py"
        script.write_text("x = 1\n")
        assert clipag_main(["run", "clipdraw", "--device", "cuda", "--", str(script)]) == 2
        assert "no CUDA" in capsys.readouterr().err


def test_openai_names_map_to_robust_models_or_fail_with_the_choices(caplog):
    from clipag_plugin.adapters._patch import robust_name

    assert robust_name("ViT-B/32") == "ViT-B/32"
    assert robust_name("ViT-L/14") == "fare2-ViT-L/14" and "closest robust" in caplog.text
    with pytest.raises(KeyError, match="fare4-ViT-L/14"):
        robust_name("RN50")


def test_notebook_cells_get_the_hooks_through_ipython(monkeypatch, offline):
    """patch(notebook=True) in IPython: every later cell runs with NUM_AUGS = 1 and normalized input,
    as IPython applies its AST transformers to each cell; restore() removes them."""
    import types

    from clipag_plugin.adapters import clipdraw

    shell = types.SimpleNamespace(ast_transformers=[], user_ns={})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))

    def run_cell(source: str) -> None:
        tree = ast.parse(source)
        for transformer in shell.ast_transformers:
            tree = transformer.visit(tree)
        exec(compile(ast.fix_missing_locations(tree), "<cell>", "exec"), shell.user_ns)

    with clipdraw.patch(notebook=True, fallback=offline):
        assert len(shell.ast_transformers) == 1
        run_cell("use_normalized_clip = False\nfor t in range(2):\n    NUM_AUGS = 4\n")
        assert shell.user_ns["NUM_AUGS"] == 1 and shell.user_ns["use_normalized_clip"] is True
    assert shell.ast_transformers == [] and "__clipag_rebind__" not in shell.user_ns


# --- reports that say what happened, scripts that behave as under `python script.py` ------------


def _fork(tmp_path, name: str, body: str) -> Path:
    script = tmp_path / name
    script.write_text("import torch\nimport clip\nmodel, preprocess = clip.load('ViT-B/32', device='cpu')\n" + body)
    return script


def test_a_fork_with_renamed_cutouts_is_reported_by_name(offline, tmp_path, caplog):
    script = _fork(tmp_path, "fork.py",
                   "class MyCutouts:\n"
                   "    def __call__(self, x):\n"
                   "        return torch.cat([x] * 4)\n"
                   "image = torch.rand(1, 3, 32, 32)\n"
                   "features = model.encode_image(MyCutouts()(image))\n")
    report = run("vqgan-clip", script, fallback=offline)
    assert report.encoder_images == 4  # the fork's own cutouts ran
    assert len(report.unreached) == 1 and "MyCutouts, which clipag run does not know" in report.unreached[0]
    assert "tricks NOT all off: cutouts not switched off" in report.summary()
    assert "MyCutouts" in caplog.text


def test_a_trick_set_inside_a_function_is_named_with_its_place(offline, tmp_path):
    script = _fork(tmp_path, "fork.py",
                   "def train():\n"
                   "    NUM_AUGS = 4\n"
                   "    return NUM_AUGS\n"
                   "device = 'cpu'\n"
                   "train()\n")
    report = run("clipdraw", script, fallback=offline)
    assert report.hooks_fired == {"device": 1}
    assert report.unreached == ["augmentation not switched off: NUM_AUGS is set inside function train (line 5), "
                                "out of clipag run's reach (move it to module level, or switch it off in your code)"]
    reached = run("clipdraw", SCRIPTS / "clipdraw_notebook.py", [str(tmp_path)], fallback=offline)
    assert reached.unreached == [] and reached.hooks_fired["NUM_AUGS"] >= 1
    assert "script names rebound: " in reached.summary() and "NUM_AUGS x" in reached.summary()


def test_a_program_that_needs_cuda_raises_a_typed_error(offline, tmp_path, capsys):
    from clipag_plugin.adapters.runner import ProgramNeedsCudaError, RunError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    script = tmp_path / "cuda.py"
    script.write_text("import torch\nx = torch.ones(2).cuda()\n")
    with pytest.raises(ProgramNeedsCudaError, match="--device cpu") as raised:
        run("clipdraw", script, fallback=offline)
    assert isinstance(raised.value, RunError) and not isinstance(raised.value, SystemExit)
    assert clipag_main(["run", "clipdraw", "--fallback", offline, "--", str(script)]) == 1
    assert "--device cpu" in capsys.readouterr().err


def test_the_scripts_namespace_is_kept_only_when_asked(offline, tmp_path):
    import gc

    script = _fork(tmp_path, "keep.py", "import sys, weakref\nsys._clipag_probe = weakref.ref(model)\nanswer = 42\n")
    report = run("clipdraw", script, fallback=offline)
    gc.collect()
    assert report.namespace == {} and sys.__dict__.pop("_clipag_probe")() is None  # the model is freed
    kept = run("clipdraw", script, fallback=offline, keep_namespace=True)
    assert kept.namespace["answer"] == 42 and sys.__dict__.pop("_clipag_probe")() is not None


@pytest.mark.timeout(120)  # a spawn pool whose workers die would wait forever
def test_script_classes_pickle_as_under_python(tmp_path):
    script = tmp_path / "classes.py"
    script.write_text(
        "import pickle, sys, multiprocessing\n"
        "class Box:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "def square(x):\n"
        "    return x * x\n"
        "if __name__ == '__main__':  # spawned workers import this file as __mp_main__\n"
        "    restored = pickle.loads(pickle.dumps(Box(3))).v\n"
        "    is_main = sys.modules['__main__'].Box is Box\n"
        "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
        "        squares = pool.map(square, [1, 2, 3])\n"
    )
    main_before = sys.modules["__main__"]
    ns = _script.run_script(script)
    assert ns["restored"] == 3 and ns["is_main"] and ns["squares"] == [1, 4, 9]
    assert sys.modules["__main__"] is main_before


def test_torch_save_of_a_script_class(tmp_path):
    script = tmp_path / "save.py"
    target = tmp_path / "net.pt"
    script.write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(2, 2)\n"
        f"torch.save(Net(), {str(target)!r})\n"
        f"loaded = torch.load({str(target)!r}, weights_only=False)\n"
    )
    assert type(_script.run_script(script)["loaded"]).__name__ == "Net"


def test_helper_modules_of_the_scripts_folder_are_fresh_each_run(tmp_path):
    (tmp_path / "StyleNet.py").write_text("VERSION = 1\n")
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("NAME = 'one'\n")
    script = tmp_path / "train.py"
    script.write_text("import StyleNet, helpers\nseen = (StyleNet.VERSION, helpers.NAME)\n")
    assert _script.run_script(script)["seen"] == (1, "one")
    assert "StyleNet" not in sys.modules and "helpers" not in sys.modules
    (tmp_path / "StyleNet.py").write_text("VERSION = 2\n")
    (tmp_path / "helpers" / "__init__.py").write_text("NAME = 'two'\n")
    assert _script.run_script(script)["seen"] == (2, "two")
    assert "torch" in sys.modules  # modules from elsewhere stay
