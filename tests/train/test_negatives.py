"""The model's own samples as negatives: buffer, ascent, the divergence term, and the loop with them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipag_plugin.train import FinetuneConfig, finetune
from clipag_plugin.train.negatives import ascend, contrastive_divergence, new_buffer, visit
from clipag_plugin.train.state import latest_checkpoint

from .test_classwise import PROMPTS, _world


def _prior(size: int = 8):
    def prior(n: int, generator: torch.Generator) -> torch.Tensor:
        return 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=generator)

    return prior


def test_new_buffer_and_visit_reset():
    g = torch.Generator().manual_seed(0)
    buffer = new_buffer(_prior(), 10, n_classes=4, generator=g)
    assert buffer.images.shape == (10, 3, 8, 8) and buffer.targets.shape == (10,) and buffer.n_classes == 4
    assert int(buffer.targets.min()) >= 0 and int(buffer.targets.max()) < 4
    before = buffer.images.clone(), buffer.targets.clone()
    slots, images, targets = visit(buffer, 6, reset=0.0, generator=g)
    assert len(set(slots.tolist())) == 6  # distinct slots
    assert torch.equal(images, before[0][slots]) and torch.equal(targets, before[1][slots])
    assert torch.equal(buffer.images, before[0])  # reset 0: nothing re-drawn
    slots, images, _ = visit(buffer, 10, reset=1.0, generator=g)
    assert not torch.equal(buffer.images, before[0]) and torch.equal(images, buffer.images[slots])
    images[0] = 0  # visit hands out copies
    assert float(buffer.images[slots[0]].min()) >= 0.25
    with pytest.raises(ValueError, match=r"count=11 must be in \[1, 10\]"):
        visit(buffer, 11, 0.0, g)
    with pytest.raises(ValueError, match="n_classes=0"):
        new_buffer(_prior(), 4, 0, g)


def test_ascend_raises_the_cosine_with_steps_of_the_given_length():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                                  torch.nn.Linear(4 * 8 * 8, 5))
    encoder.requires_grad_(False)
    x0 = 0.4 + 0.2 * torch.rand(3, 3, 8, 8)
    target = torch.randn(3, 5)

    def cos(x):
        return F.cosine_similarity(encoder(x), target, dim=-1)

    one = ascend(encoder, x0, target, steps=1, step_length=0.05)
    assert torch.allclose((one - x0).flatten(1).norm(dim=1), torch.full((3,), 0.05), atol=1e-5)  # no clamping here
    many = ascend(encoder, x0, target, steps=20, step_length=0.2)
    assert (cos(many) > cos(x0) + 0.05).all()
    assert float(many.min()) >= 0 and float(many.max()) <= 1 and not many.requires_grad
    assert torch.equal(ascend(encoder, x0, target, steps=0, step_length=1.0), x0)


def test_contrastive_divergence_known_answer_and_gradcheck():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # cosines 1 and 0: mean 0.5
    r = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    rt = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # cosine 0.8
    assert float(contrastive_divergence(s, t, r, rt)) == pytest.approx(0.5 - 0.8)
    # the gradient lowers the samples' cosine and raises the reals'
    a = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    ta, tb = torch.randn(4, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, y: contrastive_divergence(x, ta, y, tb), (a, b))
    loss = contrastive_divergence(a, ta, b, tb)
    ga, gb = torch.autograd.grad(loss, (a, b))
    with torch.no_grad():
        after = contrastive_divergence(a - 0.01 * ga, ta, b - 0.01 * gb, tb)
        cos_a = F.cosine_similarity(a - 0.01 * ga, ta).mean() < F.cosine_similarity(a, ta).mean()
        cos_b = F.cosine_similarity(b - 0.01 * gb, tb).mean() > F.cosine_similarity(b, tb).mean()
    assert after < loss and cos_a and cos_b
    with pytest.raises(ValueError, match="same shape"):
        contrastive_divergence(a, tb, b, tb)


def test_config_refuses_negatives_without_classwise():
    with pytest.raises(ValueError, match="negatives_weight=1.0 needs objective='classwise'"):
        FinetuneConfig(negatives_weight=1.0)
    with pytest.raises(ValueError, match="negatives_reset=2"):
        FinetuneConfig(objective="classwise", negatives_weight=1.0, negatives_reset=2)
    FinetuneConfig(objective="classwise", negatives_weight=1.0)  # valid


def _cfg(**kw) -> FinetuneConfig:
    return FinetuneConfig(objective="classwise", negatives_weight=1.0, negatives_batch=4, negatives_buffer=6,
                          negatives_steps=2, negatives_reset=0.3, steps=3, accum_steps=1, batch_size=6, pgd_steps=1,
                          random_start=True, lr=1e-3, warmup_steps=0, log_every=1, checkpoint_every=1,
                          keep_checkpoints=5, device="cpu", **kw)


def test_loop_with_negatives_logs_checkpoints_and_resumes_exactly(tiny_model_dir, tmp_path):
    import json

    import clipag

    data = _world(3, 6, 32)
    fresh, _ = clipag.load(str(tiny_model_dir), device="cpu")
    finetune(fresh, data, _cfg(), out_dir=tmp_path / "fresh", progress=False, class_prompts=PROMPTS, export=False)
    records = [json.loads(line) for line in (tmp_path / "fresh" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all("negatives_loss" in r and -2 <= r["negatives_loss"] <= 2 for r in records)
    ckpt, _ = latest_checkpoint(tmp_path / "fresh" / "checkpoints")
    saved = ckpt["negatives"][0]
    assert saved["images"].shape == (6, 3, 32, 32) and saved["targets"].shape == (6,)
    assert int(saved["targets"].max()) < len(PROMPTS)

    # interrupted after step 2 (its checkpoint written), then resumed: the same weights as uninterrupted
    class Stop(Exception):
        pass

    def stop_at_2(step, _metrics):
        if step == 2:
            raise Stop

    killed, _ = clipag.load(str(tiny_model_dir), device="cpu")
    with pytest.raises(Stop):
        finetune(killed, data, _cfg(), out_dir=tmp_path / "killed", progress=False, class_prompts=PROMPTS,
                 export=False, on_step=stop_at_2)
    resumed, _ = clipag.load(str(tiny_model_dir), device="cpu")
    finetune(resumed, data, _cfg(), out_dir=tmp_path / "killed", progress=False, class_prompts=PROMPTS,
             export=False, resume=True)
    a, b = resumed.inner.state_dict(), fresh.inner.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # the term changes the training: without it the weights differ
    plain, _ = clipag.load(str(tiny_model_dir), device="cpu")
    finetune(plain, data, _cfg().replace(negatives_weight=0.0), progress=False, class_prompts=PROMPTS, export=False)
    assert not torch.equal(plain.inner.state_dict()["visual.conv1.weight"], a["visual.conv1.weight"])


def test_loop_refuses_a_negatives_batch_larger_than_the_buffer(tiny_clip):
    model, _ = tiny_clip
    with pytest.raises(ValueError, match="exceeds negatives_buffer=2"):
        finetune(model, _world(1, 6, 32), _cfg().replace(negatives_buffer=2),
                 progress=False, class_prompts=PROMPTS, export=False)
