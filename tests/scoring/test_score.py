"""``clipag score``: CLIP score, the mini world's judge numbers, and FID / KID / IS on a random Inception."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from clipag_plugin.cli.score import main as score_main
from clipag_plugin.synthesis.batch import Caption, generate_batch

CAPTIONS = ["a red circle on the left, blue background", "a green square at the top, yellow background",
            "a blue triangle on the right, red background", "a yellow cross at the bottom, cyan background"]


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    """A batch run of both mini models on four world captions (3 steps)."""
    out = tmp_path_factory.mktemp("runs")
    captions = [Caption(str(i), c) for i, c in enumerate(CAPTIONS)]
    for model in ("mini", "mini-vanilla"):
        generate_batch(captions, model, out, batch_size=4, device="cpu", progress=False, steps=3, gmm_candidates=4)
    return out


@pytest.fixture
def random_inception(tmp_path, monkeypatch):
    """A randomly initialised Inception-v3 (the real architecture) saved where the cache keeps the weights."""
    pytest.importorskip("torch_fidelity")
    import hashlib

    import torch_fidelity.feature_extractor_inceptionv3 as tf

    from clipag_plugin.scoring import inception

    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    monkeypatch.setattr(tf, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    state = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "inception" / inception.INCEPTION.filename
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(inception, "INCEPTION", inception.INCEPTION.__class__(
        **{**inception.INCEPTION.__dict__, "sha256_prefix": prefix}))
    return path


def test_scores_per_model_with_the_judge_numbers(painted, capsys):
    assert score_main([str(painted), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "scored with mini-vanilla" in out and "judge FID" in out and "colour+shape" in out
    assert "also painted some of these pictures" in err  # the scorer painted half of them
    report = json.loads((painted / "score.json").read_text())
    assert set(report["models"]) == {"mini", "mini-vanilla", "all"} and report["scoring_model"] == "mini-vanilla"
    for numbers in report["models"].values():
        assert 0 <= numbers["clip_score"] <= 100 and 0 <= numbers["all"] <= 1 and numbers["judge_fid"] >= 0
    assert report["models"]["all"]["pictures"] == 8


def test_the_judge_reads_renders_back_and_their_fid_is_lower_than_noise():
    from clipag_plugin.mini import world
    from clipag_plugin.scoring.metrics import judge_scores, world_captions

    captions = CAPTIONS * 4
    renders = world.render_clean(world_captions(captions), seed=1)
    clean = judge_scores(renders, captions)
    noise = judge_scores(torch.rand(len(captions), 3, 64, 64, generator=torch.Generator().manual_seed(0)), captions)
    assert clean["all"] == 1.0 and clean["confidence"] > 0.9 and noise["all"] < 0.5
    assert clean["judge_fid"] < noise["judge_fid"] / 10
    assert world_captions(["a watercolor of a fox"]) is None


def test_clip_score_is_100_times_the_clipped_cosine():
    import clipag
    from clipag_plugin.scoring.metrics import clip_score

    model, _ = clipag.load("mini", device="cpu")
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    scores = clip_score(images, CAPTIONS[:3], model, batch_size=2)
    with torch.no_grad():
        cos = torch.cosine_similarity(model.encode_pixels(images), model.encode_text(clipag.tokenize(CAPTIONS[:3])))
    assert torch.allclose(scores, 100 * cos.clamp_min(0), atol=1e-4)
    with pytest.raises(ValueError, match="one caption per picture"):
        clip_score(images, CAPTIONS[:2], model)


def test_fid_kid_is_on_a_random_inception_from_the_cache(painted, random_inception, tmp_path, capsys):
    from PIL import Image

    from clipag_plugin.scoring.inception import inception_path
    from clipag_plugin.scoring.metrics import inception_scores

    assert inception_path() == random_inception
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    same = inception_scores(images, images, random_inception, kid_subset=3, splits=2)
    other = inception_scores(images, images.flip(1) * 0.5, random_inception, kid_subset=3, splits=2)
    assert abs(same["fid"]) < 1e-6 and other["fid"] > 0  # a random network's features barely vary, but they do
    assert set(same) == {"pictures", "fid", "kid", "kid_std", "is", "is_std"} and same["is"] >= 1.0 - 1e-4
    reference = tmp_path / "reference"
    reference.mkdir()
    for i in range(4):
        Image.fromarray((torch.rand(64, 64, 3).numpy() * 255).astype("uint8")).save(reference / f"{i}.png")
    assert score_main([str(painted), "--device", "cpu", "--reference", str(reference)]) == 0
    report = json.loads((painted / "score.json").read_text())
    assert {"fid", "kid", "is"} <= set(report["models"]["mini"])
    assert "FID" in capsys.readouterr().out


def test_missing_inception_weights_name_the_file_and_the_command(painted, offline_hub, capsys):
    assert score_main([str(painted), "--reference", str(painted / "mini")]) == 2
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "clipag download inception" in err


def test_the_weights_are_read_weights_only(tmp_path):
    pytest.importorskip("torch_fidelity")
    from clipag_plugin.scoring.inception import inception_extractor

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Caption("x", "y")))  # not tensors: a pickled object
    with pytest.raises(pickle.UnpicklingError):
        inception_extractor(["2048"], evil)


def test_chunks_give_the_numbers_of_the_whole(painted, monkeypatch, capsys):
    import clipag_plugin.cli.score as cli

    assert score_main([str(painted), "--device", "cpu", "--json", str(painted / "whole.json")]) == 0
    monkeypatch.setattr(cli, "CHUNK", 3)  # 4 pictures per model: chunks of 3 and 1
    assert score_main([str(painted), "--device", "cpu", "--json", str(painted / "chunks.json")]) == 0
    whole = json.loads((painted / "whole.json").read_text())["models"]
    chunks = json.loads((painted / "chunks.json").read_text())["models"]
    for name in whole:
        for key in ("pictures", "clip_score", "colour", "shape", "all", "confidence"):
            assert chunks[name][key] == pytest.approx(whole[name][key], rel=1e-5), (name, key)  # float32 sums
