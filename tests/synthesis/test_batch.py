"""Batch generation: caption files, per-image targets, the manifest, resume after kill -9, torchrun ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipag_plugin.synthesis.batch import (
    MANIFEST,
    Caption,
    Manifest,
    caption_seed,
    generate_batch,
    read_captions,
)

CAPTIONS = ["a red circle on the left, blue background", "a green square at the top, yellow background",
            "a blue triangle on the right, red background", "a yellow cross at the bottom, cyan background",
            "a magenta circle in the center, green background"]
FAST = dict(steps=3, gmm_candidates=4)  # the mini preset, short


def _write(path: Path, lines) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_caption_files_txt_csv_jsonl(tmp_path):
    txt = read_captions(_write(tmp_path / "c.txt", ["a red barn", "", "  a  blue   sky "]))
    assert txt == [Caption("000001", "a red barn"), Caption("000002", "a blue sky")]
    csv = read_captions(_write(tmp_path / "c.csv", ["id,caption", "391895,a man on a bike", '7,"a cat, asleep"']))
    assert [(c.id, c.text) for c in csv] == [("391895", "a man on a bike"), ("7", "a cat, asleep")]
    jsonl = read_captions(_write(tmp_path / "c.jsonl", ['{"id": 5, "caption": "a: colon | bar"}', "",
                                                          '{"caption": "no id"}']))
    assert [(c.id, c.text) for c in jsonl] == [("5", "a: colon | bar"), ("000002", "no id")]


@pytest.mark.parametrize("name, lines, match", [
    ("e.txt", [""], "has no captions"),
    ("d.csv", ["id,caption", "1,a", "1,b"], "id '1' repeats line 2"),
    ("b.csv", ["id,text", "1,a"], "needs a 'caption' column"),
    ("s.csv", ["id,caption", "a/b,x"], "cannot name a file"),
    ("j.jsonl", ['{"id": 1, "caption": "a"}', "{oops"], "line 2: not JSON"),
    ("k.jsonl", ['{"id": 1, "text": "a"}'], "line 1: needs a 'caption' field"),
    ("m.jsonl", ['{"id": 1, "caption": "  "}'], "line 1: empty caption"),
])
def test_bad_caption_files_name_the_line(tmp_path, name, lines, match):
    with pytest.raises(ValueError, match=match):
        read_captions(_write(tmp_path / name, lines))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_captions(tmp_path / "missing.txt")


def test_a_caption_seed_depends_on_its_id_and_the_base_seed_only():
    assert caption_seed("391895", 0) == caption_seed("391895", 0)
    seeds = {caption_seed("391895", 0), caption_seed("391895", 1), caption_seed("391896", 0),
             caption_seed("391895", 0, 1)}
    assert len(seeds) == 4 and all(0 <= s < 2**31 for s in seeds)


def test_a_batch_paints_each_caption_as_it_would_be_painted_alone(tmp_path):
    from clipag_plugin.synthesis.api import generate_tensor

    captions = [Caption(str(i), text) for i, text in enumerate(CAPTIONS[:3])]
    summary = generate_batch(captions, "mini", tmp_path, batch_size=3, device="cpu", progress=False, **FAST)
    assert summary.made == 3 and summary.skipped == 0 and summary.manifest == tmp_path / MANIFEST
    records = [json.loads(line) for line in (tmp_path / MANIFEST).read_text().splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "2"] and {r["settings"] for r in records} == {summary.settings}
    for record, caption in zip(records, captions, strict=True):
        alone = generate_tensor(caption.text, "mini", seeds=caption_seed(caption.id), device="cpu", progress=False,
                                **FAST)
        painted = torch.from_numpy(np.array(Image.open(tmp_path / record["file"]))).permute(2, 0, 1) / 255
        assert (painted - alone.images[0]).abs().max() <= 1.5 / 255, caption  # PNG rounding, batched float sums
        assert abs(record["loss"] - float(alone.loss[0])) < 1e-3
    assert json.loads((tmp_path / "mini" / "settings.json").read_text())["settings"] == summary.settings


def test_a_rerun_skips_what_is_done_and_other_settings_are_refused(tmp_path):
    captions = [Caption(str(i), text) for i, text in enumerate(CAPTIONS[:3])]
    first = generate_batch(captions, "mini", tmp_path, per_caption=2, batch_size=4, device="cpu", progress=False,
                           **FAST)
    assert first.made == 6 and sorted(p.name for p in (tmp_path / "mini").glob("*.png")) == [
        f"{i}_s{k}.png" for i in range(3) for k in range(2)]
    (tmp_path / "mini" / "1_s0.png").unlink()  # a lost file is painted again
    again = generate_batch(captions + [Caption("9", CAPTIONS[3])], "mini", tmp_path, per_caption=2, batch_size=4,
                           device="cpu", progress=False, **FAST)
    assert again.made == 3 and again.skipped == 5
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert len(lines) == 8 and len({(json.loads(x)["id"], json.loads(x)["index"]) for x in lines}) == 8
    with pytest.raises(ValueError, match="other settings"):
        generate_batch(captions, "mini", tmp_path, per_caption=2, device="cpu", progress=False, steps=4,
                       gmm_candidates=4)
    with pytest.raises(ValueError, match="size 0 is not supported"):
        generate_batch(captions, "mini", tmp_path / "x", device="cpu", size=0)


def test_a_torn_last_manifest_line_is_ignored(tmp_path):
    (tmp_path / "mini").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "mini" / "a.png")
    whole = {"model": "mini", "id": "a", "index": 0, "file": "mini/a.png", "settings": "x"}
    (tmp_path / "manifest.part-0.jsonl").write_text(json.dumps(whole) + '\n{"model": "mini", "id": "b", "ind')
    assert list(Manifest(tmp_path).done()) == [("mini", "a", 0)]


def _cli(*args, env=None):
    return [sys.executable, "-m", "clipag", "generate", *args]


def test_kill_9_then_rerun_leaves_every_picture_once(tmp_path):
    captions = _write(tmp_path / "c.txt", CAPTIONS * 2)  # 10 captions, 5 batches of 2
    flags = ["--prompts", str(captions), "--out-dir", str(tmp_path / "out"), "--model", "mini", "--batch", "2",
             "--steps", "3", "--candidates", "4", "--device", "cpu", "--quiet"]
    proc = subprocess.Popen(_cli(*flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    part = tmp_path / "out" / "manifest.part-0.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not part.is_file() or len(part.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: at least one batch written, the rest not
    proc.wait()
    assert part.is_file() and not (tmp_path / "out" / MANIFEST).exists()
    finished = len(Manifest(tmp_path / "out").done())  # a file renamed but not yet recorded is painted again
    assert 2 <= finished < 10
    done = subprocess.run(_cli(*flags), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{10 - finished} pictures painted, {finished} already there" in done.stdout
    files = sorted(p.name for p in (tmp_path / "out" / "mini").glob("*.png"))
    assert files == [f"{i:06d}.png" for i in range(1, 11)]
    assert not list((tmp_path / "out" / "mini").glob(".*.tmp"))
    records = [json.loads(line) for line in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [f"{i:06d}" for i in range(1, 11)]
    for name in files:
        Image.open(tmp_path / "out" / "mini" / name).load()  # whole files only
    assert not list((tmp_path / "out").glob("manifest.part-*"))


def test_two_ranks_paint_the_same_pictures_as_one(tmp_path):
    captions = _write(tmp_path / "c.txt", CAPTIONS)
    flags = ["--prompts", str(captions), "--model", "mini", "--batch", "2", "--steps", "3", "--candidates", "4",
             "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "clipag", "generate", "--out-dir", str(tmp_path / "two"), *flags],
                         capture_output=True, text=True, timeout=300, env=env)
    if two.returncode != 0 and "gloo" in two.stderr.lower() and "not available" in two.stderr.lower():
        pytest.skip("torch built without gloo")
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(_cli("--out-dir", str(tmp_path / "one"), *flags), capture_output=True, text=True,
                         timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    ranks = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "two" / MANIFEST).read_text().splitlines()}
    single = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "one" / MANIFEST).read_text().splitlines()}
    assert sorted(ranks) == sorted(single) == [f"{i:06d}" for i in range(1, 6)]
    for cid, record in single.items():
        assert ranks[cid]["seed"] == record["seed"]
        a = np.asarray(Image.open(tmp_path / "two" / record["file"]), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "one" / record["file"]), dtype=np.int16)
        assert np.abs(a - b).max() <= 1, cid


@pytest.mark.parametrize("args, match", [
    (["--prompts", "{c}"], "--prompts needs --out-dir"),
    (["--out-dir", "{d}", "a red circle"], "--out-dir is for caption files"),
    (["--prompts", "{c}", "--out-dir", "{d}", "a red circle"], "either a prompt or --prompts"),
    (["--prompts", "{c}", "--out-dir", "{d}", "--seed", "1", "2"], "one base seed"),
    (["--prompts", "{c}", "--out-dir", "{d}", "--seeds", "0"], "--seeds 0 must be at least 1"),
    (["--prompts", "{c}", "--out-dir", "{d}", "--save-every", "5"], "finished pictures only"),
    (["--prompts", "{d}/none.txt", "--out-dir", "{d}"], "does not exist"),
    ([], "give a prompt"),
])
def test_batch_flags_misused_are_one_line(tmp_path, capsys, args, match):
    from clipag_plugin.cli.generate import main

    captions = _write(tmp_path / "c.txt", CAPTIONS[:1])
    argv = [a.format(c=captions, d=tmp_path) for a in args] + ["--model", "mini", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
