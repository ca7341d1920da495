"""The shipped mini models: loadable offline through clipag.load, small, trained, and robust
where vanilla is not. Also the CI check of the PAG effect (synthesis judged per attribute)."""

from __future__ import annotations

import json

import pytest
import torch

import clipag
from clipag_plugin.mini import pag, pretrain, world
from clipag_plugin.mini.build import default_out, sha256_of

WEIGHTS = default_out()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    loaded = {name: clipag.load(name, device="cpu")[0] for name in ("mini-vanilla", "mini")}
    for m in loaded.values():
        m.requires_grad_(False)
    return loaded


def test_shipped_files_are_small_and_match_the_build_record():
    record = json.loads((WEIGHTS / "build.json").read_text())
    total = 0
    for rel, info in record["files"].items():
        path = WEIGHTS / rel
        assert path.stat().st_size == info["bytes"]
        assert sha256_of(path) == info["sha256"], f"{rel} differs from build.json; rebuild or update the record"
        total += info["bytes"]
    assert total <= 20 * 1024 * 1024


def test_models_have_the_clip_surface_and_read_clipag_tokenize(models):
    for m in models.values():
        assert m.visual.input_resolution == pretrain.INPUT_SIZE == 96 and m.context_length == 77
        assert m.dtype == torch.float32  # fp16 storage, fp32 weights after load
        tokens = clipag.tokenize(["a red circle on the left, green background"])
        assert tokens.shape == (1, 77)
        image = torch.nn.functional.interpolate(world.render_clean([0]), size=96, mode="bilinear")
        logits_i, logits_t = m(m.normalize(image), tokens)
        assert logits_i.shape == logits_t.shape == (1, 1)


def test_text_tower_and_logit_scale_are_shared_by_the_robust_model(models):
    v, r = (models[n].inner.state_dict() for n in ("mini-vanilla", "mini"))
    for key in v:
        if not key.startswith("visual."):
            assert torch.equal(v[key], r[key]), key
    assert any(not torch.equal(v[k], r[k]) for k in v if k.startswith("visual."))


def test_clean_and_attacked_caption_retrieval(models):
    ids = torch.randperm(600, generator=torch.Generator().manual_seed(0))[:96]
    images = world.render_clean(ids, seed=7)
    acc = {}
    for name, m in models.items():
        txt = pretrain.text_features(m.inner)
        acc[name] = (pag.attacked_retrieval(m.inner, images, ids, 0.0, txt=txt),
                     pag.attacked_retrieval(m.inner, images, ids, 1.0, steps=5, txt=txt))
    # robust clean retrieval must stay >= 0.95 (600-caption figures: mini 1.000, vanilla 0.943)
    assert acc["mini"][0] >= 0.95 and acc["mini-vanilla"][0] >= 0.9, acc
    # measured with 10 PGD steps on 300 images: 0.92 vs 0.07 (docs/mini-world.md)
    assert acc["mini"][1] >= acc["mini-vanilla"][1] + 0.5, acc


def test_synthesis_reaches_the_prompt_with_both_models(models):
    """The measurement's pixel optimization works: each model's images end near its prompt."""
    prompts, _ = pag.seeded_prompts(6, seed=3)
    init = pag.sample_init(pag.fit_init(n=800, seed=0), len(prompts), torch.Generator().manual_seed(1))
    tokens = clipag.tokenize(prompts)
    for name, m in models.items():
        images = pag.synthesize(m.inner, prompts, init, pag.SynthConfig(steps=30))
        with torch.no_grad():
            before = torch.nn.functional.cosine_similarity(m.encode_pixels(init), m.encode_text(tokens))
            after = torch.nn.functional.cosine_similarity(m.encode_pixels(images), m.encode_text(tokens))
        assert (after > before + 0.1).all(), (name, before, after)


# The product default, measured: `clipag generate PROMPT --model mini` with no other flag uses the
# models' shared preset (multires, fixed-length L2 steps, every augmentation off, best of 1000
# world-GMM starts), judged per attribute.


def test_pag_gap_robust_paints_the_prompt_where_vanilla_does_not(models):
    """CI check of the paper's claim at mini-world scale with each model's own preset (docs/mini-world.md).

    On these 12 prompts the shipped models measured colour+shape 0.92 (mini) vs 0.42
    (mini-vanilla) and shape 0.92 vs 0.50; the assertions keep a margin below those gaps
    for numerical differences between machines.
    """
    from clipag_plugin.mini import judge as J
    from clipag_plugin.synthesis.api import generate_tensor

    prompts, _ = pag.seeded_prompts(12, seed=2024)
    scores = {}
    for name, m in models.items():
        images = torch.cat([generate_tensor(p, m, seeds=[i], preset="mini", device="cpu", progress=False).images
                            for i, p in enumerate(prompts)])
        scores[name] = J.score(images, prompts)
    robust, vanilla = scores["mini"], scores["mini-vanilla"]
    assert robust["colour+shape"] >= vanilla["colour+shape"] + 0.3, scores
    assert robust["shape"] >= vanilla["shape"] + 0.25, scores


def test_morph_robust_gradients_redraw_the_shape_where_vanilla_gradients_do_not(models):
    """The morph test (benchmarks/mini_morph.py) on 24 renders: L2 steps towards the same caption with
    another shape. Measured on 48 renders: the judge reads the target shape in 0.54 (mini) vs 0.00."""
    from clipag_plugin.mini import judge as J

    g = torch.Generator().manual_seed(5)
    ids = torch.randint(600, (24,), generator=g)
    texts = world.all_captions()
    prompts = [texts[i] for i in pag.retarget(ids, "shape", g).tolist()]
    start = world.render_clean(ids, seed=3)
    read = {name: J.score(pag.synthesize(m, prompts, start, pag.SynthConfig(steps=60, lr=1.0, optimizer="l2")),
                          prompts)["shape"] for name, m in models.items()}
    assert read["mini"] >= read["mini-vanilla"] + 0.25 and read["mini-vanilla"] <= 0.15, read
