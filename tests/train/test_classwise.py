"""The classwise (TeCoA) objective: loss known answers, gradcheck, the class bank, the loop with it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import clipag
from clipag_plugin.train import FinetuneConfig, finetune
from clipag_plugin.train import dist as tdist
from clipag_plugin.train.loop import _micro_step, freeze_text_tower
from clipag_plugin.train.objective import classwise_loss, contrastive_loss
from clipag_plugin.train.text import class_bank

PROMPTS = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "cross")]


def test_classwise_known_answers():
    eye = torch.eye(4, dtype=torch.float64)
    labels = torch.arange(4)
    assert float(classwise_loss(eye, eye, labels, 0.0)) == pytest.approx(math.log(4))
    assert float(classwise_loss(eye, eye, labels, 100.0)) < 1e-6
    # against a larger class set than the batch: the batch's own pairs are not what is compared
    classes = torch.randn(7, 5, dtype=torch.float64)
    img = classes[[2, 5]] + 0.01 * torch.randn(2, 5, dtype=torch.float64)
    expected = F.cross_entropy(10.0 * F.normalize(img, dim=-1) @ F.normalize(classes, dim=-1).t(), torch.tensor([2, 5]))
    assert torch.allclose(classwise_loss(img * 4, classes, torch.tensor([2, 5]), 10.0), expected)
    # with the batch's own captions as the classes it is the image->text half of the contrastive loss
    a, b = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    half = F.cross_entropy(20.0 * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t(), torch.arange(5))
    assert torch.allclose(classwise_loss(a, b, torch.arange(5), 20.0), half)
    assert not torch.allclose(classwise_loss(a, b, torch.arange(5), 20.0), contrastive_loss(a, b, 20.0))
    with pytest.raises(ValueError, match="one label per image"):
        classwise_loss(a, b, torch.arange(4), 1.0)


def test_classwise_gradcheck_float64():
    img = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    cls = torch.randn(5, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: classwise_loss(x, cls, torch.tensor([0, 4, 2]), 7.0), (img,))


def test_class_bank_labels_and_unknown_caption(tiny_clip):
    model, _ = tiny_clip
    bank = class_bank(model, PROMPTS)
    assert bank.features.shape == (len(PROMPTS), model.inner.text_projection.shape[1])
    assert torch.allclose(bank.features, model.encode_text(clipag.tokenize(PROMPTS)).float(), atol=1e-5)
    order = [4, 0, 8, 4]
    assert bank.labels(clipag.tokenize([PROMPTS[i] for i in order])).tolist() == order
    with pytest.raises(ValueError, match="'a purple circle' is not one of the 9 class prompts"):
        bank.labels(clipag.tokenize(["a red circle", "a purple circle"]))
    with pytest.raises(ValueError, match="no class prompts"):
        class_bank(model, [])


def _world(n: int, b: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randperm(len(PROMPTS), generator=g)[:b]
        out.append((torch.rand(b, 3, size, size, generator=g), clipag.tokenize([PROMPTS[i] for i in ids])))
    return out


def test_classwise_micro_step_attacks_the_classwise_loss(tiny_clip):
    model, _ = tiny_clip
    freeze_text_tower(model)
    bank = class_bank(model, PROMPTS)
    images, tokens = _world(1, 6, model.visual.input_resolution)[0]
    d, cpu = tdist.info(), torch.device("cpu")
    clean = _micro_step(model, model.visual, None, images, tokens, FinetuneConfig(pgd_steps=0, objective="classwise"),
                        d, 0, cpu, bank)
    with torch.no_grad():
        feats = model.visual(model.normalize(images))
    scale = model.logit_scale.exp().clamp(max=100)
    expected = classwise_loss(feats, bank.features, bank.labels(tokens), scale)
    assert float(clean["adv_loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    adv = _micro_step(model, model.visual, None, images, tokens,
                      FinetuneConfig(pgd_steps=3, eps=1.0, objective="classwise"), d, 0, cpu, bank)
    assert float(adv["adv_loss"].detach()) > float(clean["adv_loss"].detach()) + 1e-3


def test_finetune_classwise_from_list_and_file(tiny_clip, tmp_path):
    model, _ = tiny_clip
    before = {k: v.clone() for k, v in model.inner.state_dict().items() if not k.startswith("visual.")}
    size = model.visual.input_resolution
    cfg = FinetuneConfig(steps=2, accum_steps=1, batch_size=4, lr=1e-3, warmup_steps=0, objective="classwise",
                         num_workers=0, log_every=1)
    out = finetune(model, _world(2, 4, size), cfg, progress=False, class_prompts=PROMPTS)
    assert all(torch.equal(before[k], v) for k, v in out.inner.state_dict().items() if k in before)
    prompts_file = tmp_path / "classes.txt"
    prompts_file.write_text("\n".join(PROMPTS) + "\n\n")
    seen = []
    cfg_file = FinetuneConfig(**{**cfg.to_dict(), "class_prompts": str(prompts_file)})
    finetune(model, _world(2, 4, size, seed=1), cfg_file, progress=False, on_step=lambda s, m: seen.append(m["loss"]))
    assert len(seen) == 2 and all(math.isfinite(v) for v in seen)


def test_classwise_errors_name_the_fix(tiny_clip, tmp_path):
    model, _ = tiny_clip
    data = _world(1, 4, model.visual.input_resolution)
    with pytest.raises(ValueError, match="needs the class captions; pass class_prompts"):
        finetune(model, data, FinetuneConfig(steps=1, objective="classwise", num_workers=0), progress=False)
    with pytest.raises(FileNotFoundError, match="--class-prompts .*no such file"):
        finetune(model, data, FinetuneConfig(steps=1, objective="classwise", class_prompts=str(tmp_path / "x.txt"),
                                             num_workers=0), progress=False)
    with pytest.raises(ValueError, match="set objective='classwise'"):
        finetune(model, data, FinetuneConfig(steps=1, num_workers=0), progress=False, class_prompts=PROMPTS)
    with pytest.raises(ValueError, match="objective='bogus'; choose one of"):
        FinetuneConfig(objective="bogus")


def test_eps_ramp_known_values_and_the_loop_uses_it(tiny_clip, monkeypatch):
    cfg = FinetuneConfig(eps=2.0, pgd_steps=4, eps_ramp_steps=4, eps_ramp_start=0.5, accum_steps=2)
    assert [cfg.eps_at(s, 64)[0] for s in (0, 2, 4, 10)] == pytest.approx([1.0, 1.5, 2.0, 2.0])
    assert cfg.eps_at(0, 64)[1] == pytest.approx(2.5 * 1.0 / 4) and cfg.eps_at(9, 64)[1] == pytest.approx(2.5 * 2.0 / 4)
    assert FinetuneConfig(eps=2.0).eps_at(0, 64) == pytest.approx((2.0, 2.5 * 2.0 / 3))
    for bad, match in (({"eps_ramp_steps": -1}, "eps_ramp_steps=-1"), ({"eps_ramp_start": 1.5}, "eps_ramp_start=1.5")):
        with pytest.raises(ValueError, match=match):
            FinetuneConfig(**bad)
    import clipag_plugin.train.step as step  # where _micro_step calls the attack

    seen = []
    real = step.pgd_attack
    monkeypatch.setattr(step, "pgd_attack", lambda fn, x, eps, *a, **k: seen.append(eps) or real(fn, x, eps, *a, **k))
    model, _ = tiny_clip
    freeze_text_tower(model)
    images, tokens = _world(1, 4, model.visual.input_resolution)[0]
    for micro in (0, 1, 4, 8):  # optimizer steps 0, 0, 2, 4
        _micro_step(model, model.visual, None, images, tokens, cfg, tdist.info(), micro, torch.device("cpu"))
    assert seen == pytest.approx([1.0, 1.0, 1.5, 2.0])
