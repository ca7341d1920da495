"""Judge API and the measurement's pure pieces (fast, no shipped CLIP needed)."""

from __future__ import annotations

import json

import pytest
import torch

from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag, world


def test_judge_forward_gives_one_logit_vector_per_attribute():
    judge = J.Judge(width=8)
    out = judge(torch.rand(2, 3, 64, 64))
    assert {k: v.shape for k, v in out.items()} == {"colour": (2, 6), "shape": (2, 4), "position": (2, 5), "background": (2, 6)}
    assert judge(torch.rand(1, 3, 96, 96))["shape"].shape == (1, 4)  # other sizes are resized


def test_judge_save_load_round_trip(tmp_path):
    judge = J.Judge(width=8).eval()
    path = J.save_judge(judge, tmp_path / "j.safetensors")
    again = J.load_judge(path)
    x = torch.rand(3, 3, 64, 64)
    for k, v in judge(x).items():
        assert torch.allclose(v, again(x)[k], atol=2e-2)  # fp16 storage


def test_score_needs_one_prompt_per_image():
    with pytest.raises(ValueError, match="one prompt per image"):
        J.score(torch.rand(2, 3, 64, 64), ["a red circle on the left, green background"], J.Judge(8))


def test_shipped_judge_reads_clean_and_varied_renders():
    judge = J.load_judge()
    ids = torch.arange(0, 600, 3)
    texts = [world.all_captions()[i] for i in ids.tolist()]
    clean = J.score(world.render_clean(ids, seed=99), texts, judge)
    varied = J.score(world.render(world.scenes_from_indices(ids, torch.Generator().manual_seed(5), world.TRAIN)), texts, judge)
    assert clean["all"] >= 0.95 and varied["all"] >= 0.9
    blank = torch.full((4, 3, 64, 64), 0.5)
    assert J.score(blank, texts[:4], judge)["colour+shape"] <= 0.5


def test_score_folder_reads_pngs_with_prompts_json_or_sidecar_txt(tmp_path):
    from PIL import Image

    ids = [0, 100, 200, 300]
    images = world.render_clean(ids, seed=1)
    texts = [world.all_captions()[i] for i in ids]
    table = {}
    for i, (img, text) in enumerate(zip(images, texts, strict=True)):
        array = (img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(array).save(tmp_path / f"{i}.png")
        if i % 2:
            (tmp_path / f"{i}.txt").write_text(text)
        else:
            table[f"{i}.png"] = text
    (tmp_path / "prompts.json").write_text(json.dumps(table))
    assert J.score_folder(tmp_path)["all"] == 1.0
    (tmp_path / "extra.png").write_bytes((tmp_path / "0.png").read_bytes())
    with pytest.raises(FileNotFoundError, match="no prompt found"):
        J.score_folder(tmp_path)


def test_init_gaussian_is_caption_agnostic_and_in_range():
    gauss = pag.fit_init(n=400, res=8, seed=0)
    x = pag.sample_init(gauss, 5, torch.Generator().manual_seed(0), shrink=0.35)
    assert x.shape == (5, 3, 64, 64) and x.min() >= 0 and x.max() <= 1
    y = pag.sample_init(gauss, 5, torch.Generator().manual_seed(0), shrink=0.0)
    assert torch.allclose(y[0], y[1])  # shrink 0 = the mean image


def test_blur_and_total_variation_gradcheck():
    x = torch.rand(1, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pag._blur(t, 1.0), (x,))
    y = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pag.total_variation, (y,))
    flat = torch.ones(1, 3, 8, 8)
    assert pag.total_variation(flat) == 0
    assert torch.allclose(pag._blur(flat, 1.5), flat)


def test_seeded_prompts_are_fixed_and_distinct():
    a, ia = pag.seeded_prompts(60)
    b, ib = pag.seeded_prompts(60)
    assert a == b and len(set(a)) == 60 and torch.equal(ia, ib)


def test_synth_config_names_the_optimizers():
    assert pag.SynthConfig(optimizer="l2").optimizer == "l2"
    with pytest.raises(ValueError, match=r"optimizer='sgd'; choose one of \('adamw', 'l2'\)"):
        pag.SynthConfig(optimizer="sgd")


def test_retarget_changes_exactly_the_named_attribute():
    ids = torch.arange(0, 600, 7)
    g = torch.Generator().manual_seed(0)
    for attribute, slot in (("colour", 0), ("shape", 1)):
        new = pag.retarget(ids, attribute, g)
        for old_id, new_id in zip(ids.tolist(), new.tolist(), strict=True):
            old, changed = world.index_tuple(old_id), world.index_tuple(new_id)
            assert changed[slot] != old[slot]
            assert [v for k, v in enumerate(changed) if k != slot] == [v for k, v in enumerate(old) if k != slot]
            assert changed[0] != changed[3]  # a caption never names the background's colour for the object
    with pytest.raises(ValueError, match="choose 'colour' or 'shape'"):
        pag.retarget(ids, "position", g)


def test_index_tuple_inverts_caption_index_and_names_the_range():
    assert all(world.caption_index(*world.index_tuple(i)) == i for i in range(600))
    with pytest.raises(IndexError, match="600 captions"):
        world.index_tuple(600)


def test_world_images_reach_the_model_upsampled_differentiably_and_keep_flat_colours():
    from clipag_plugin.mini import pretrain
    from clipag_plugin.synthesis.init import upsample

    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: upsample(t * 0.8 + 0.1, 9), (x,))
    flat = torch.full((2, 3, 64, 64), 0.3)
    up = upsample(flat, pretrain.INPUT_SIZE)
    assert up.shape == (2, 3, 96, 96) and torch.allclose(up, torch.full_like(up, 0.3))
    model = pretrain.new_model(0).eval()
    with torch.no_grad():
        assert torch.allclose(pretrain.encode_world(model, flat), model.encode_image(pretrain.normalize(up)), atol=1e-6)


def test_confusions_count_only_misreadings_by_asked_and_read_value():
    judge = J.load_judge()
    ids = torch.tensor([0, 1, 2, 3])
    texts = [world.all_captions()[i] for i in ids.tolist()]
    images = world.render_clean(ids, seed=3)
    assert all(not counts for counts in J.confusions(images, texts, judge).values())  # clean renders: no misreading
    # ask for other colours: every colour reading is now a misreading of the asked colour as the true one
    asked = [t.replace(world.parse_caption(t)["colour"], "cyan" if world.parse_caption(t)["colour"] != "cyan" else "red", 1)
             for t in texts]
    colour = J.confusions(images, asked, judge)["colour"]
    assert sum(colour.values()) == 4
    for (want, read), _ in colour.items():
        assert want != read and read in world.COLOURS
    expected = {}
    for t, a in zip(texts, asked, strict=True):
        key = (world.parse_caption(a)["colour"], world.parse_caption(t)["colour"])
        expected[key] = expected.get(key, 0) + 1
    assert colour == dict(sorted(expected.items(), key=lambda kv: (-kv[1], kv[0])))
    with pytest.raises(ValueError, match="one prompt per image"):
        J.confusions(images, texts[:2], judge)


class _Reader(torch.nn.Module):
    """A stand-in CLIP that reads caption ``reads[i]`` in image ``i``, whatever the image shows."""

    def __init__(self, txt: torch.Tensor, reads: list[int]) -> None:
        super().__init__()
        self.txt, self.reads = txt, torch.tensor(reads)
        self.visual = torch.nn.Module()
        self.visual.image_size = world.SIZE

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == len(self.reads)
        return self.txt[self.reads] * 3.0  # unnormalized on purpose


def test_model_readings_are_the_attributes_of_the_nearest_caption():
    txt = torch.nn.functional.normalize(torch.randn(600, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    reads = [0, 137, 599]
    got = pag.model_readings(_Reader(txt, reads), torch.rand(3, 3, world.SIZE, world.SIZE), txt)
    for k, a in enumerate(("colour", "shape", "position", "background")):
        assert got[a].tolist() == [world.index_tuple(i)[k] for i in reads]


def test_failure_split_separates_fooled_from_not_reached():
    """Three clean renders, judged by the shipped judge (clean accuracy 1.00): one asked for what it
    shows; one asked for another colour that the model reads anyway (fooled); one asked for another
    colour that neither reads (not reached)."""
    texts = world.all_captions()
    shown = torch.tensor([5, 250, 420])
    asked = shown.clone()
    asked[1:] = pag.retarget(shown[1:], "colour", torch.Generator().manual_seed(3))
    txt = torch.nn.functional.normalize(torch.randn(600, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    model = _Reader(txt, [int(asked[0]), int(asked[1]), int(shown[2])])
    split = pag.failure_split(model, world.render_clean(shown, seed=2), [texts[i] for i in asked.tolist()], txt=txt)
    assert split["colour"] == pytest.approx({"right": 1 / 3, "fooled": 1 / 3, "not_reached": 1 / 3})
    assert split["shape"] == {"right": 1.0, "fooled": 0.0, "not_reached": 0.0}  # the shapes were not changed
    for parts in split.values():
        assert sum(parts.values()) == pytest.approx(1.0)
