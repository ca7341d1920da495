"""The training loop on a tiny CLIP: frozen text tower, every image parameter learns, options, config."""

from __future__ import annotations

import json

import pytest
import torch

import clipag
from clipag_plugin.train import FinetuneConfig, finetune
from clipag_plugin.train import dist as tdist
from clipag_plugin.train.loop import _micro_step, freeze_text_tower, lr_at


def _batches(n: int = 3, b: int = 6, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(b, 3, size, size, generator=g), clipag.tokenize([f"photo {seed} {k} {i}" for i in range(b)]))
            for k in range(n)]


def test_text_tower_bit_identical_and_image_tower_changes(tiny_clip, tmp_path):
    model, _ = tiny_clip
    before = {k: v.clone() for k, v in model.inner.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    cfg = FinetuneConfig(steps=2, accum_steps=2, batch_size=6, lr=1e-3, warmup_steps=0, random_start=True,
                         clean_weight=0.3, fare_weight=0.1, log_every=1)
    out = finetune(model, _batches(), cfg, out_dir=tmp_path / "run", progress=False)
    after = out.inner.state_dict()
    text_keys = [k for k in before if not k.startswith("visual.")]
    assert "logit_scale" in text_keys and any(k.startswith("transformer.") for k in text_keys)
    assert all(torch.equal(before[k], after[k]) for k in text_keys)
    changed = [k for k in before if k.startswith("visual.") and not torch.equal(before[k], after[k])]
    assert len(changed) == sum(1 for k in before if k.startswith("visual."))
    assert [p.requires_grad for p in out.parameters()] == flags and not out.training
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    assert {"loss", "adv_loss", "clean_loss", "fare_loss", "images_per_s", "lr"} <= set(lines[0])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["resolved_eps"] == pytest.approx(1.5 * 32 / 224) and saved["clean_weight"] == 0.3


@pytest.mark.parametrize("model_fixture", ["tiny_clip", "tiny_rn_clip"])
def test_every_image_parameter_gets_a_gradient(model_fixture, request):
    model, _ = request.getfixturevalue(model_fixture)
    with torch.no_grad():  # open_clip zero-initializes each bottleneck's last BatchNorm gain; a trained one is not
        for name, p in model.visual.named_parameters():
            if name.endswith("bn3.weight"):
                p.fill_(1.0)
    size = model.visual.input_resolution
    params = freeze_text_tower(model)
    model.visual.train()
    cfg = FinetuneConfig(batch_size=4, pgd_steps=2, random_start=True, num_workers=0)
    images, tokens = _batches(1, 4, size)[0]
    losses = _micro_step(model, model.visual, None, images, tokens, cfg, tdist.info(), 0, torch.device("cpu"))
    losses["backward"].backward()
    missing = [n for n, p in model.visual.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"image-tower parameters without gradient: {missing}"
    assert all(p.grad is None for n, p in model.inner.named_parameters() if not n.startswith("visual."))
    assert len(params) == len(list(model.visual.parameters()))


def test_adversarial_loss_exceeds_clean_loss(tiny_clip):
    model, _ = tiny_clip
    images, tokens = _batches(1, 8)[0]
    d, cpu = tdist.info(), torch.device("cpu")
    clean = _micro_step(model, model.visual, None, images, tokens, FinetuneConfig(pgd_steps=0), d, 0, cpu)
    adv = _micro_step(model, model.visual, None, images, tokens, FinetuneConfig(pgd_steps=3, eps=1.0), d, 0, cpu)
    assert float(adv["adv_loss"].detach()) > float(clean["adv_loss"].detach()) + 1e-3


def test_lr_schedule_warmup_then_cosine():
    cfg = FinetuneConfig(lr=1.0, steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0) and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:-1], lrs[2:], strict=True)) and lrs[-1] > 0.1


def test_config_validation_and_files(tmp_path):
    with pytest.raises(ValueError, match="norm"):
        FinetuneConfig(norm="l1")
    with pytest.raises(KeyError, match="valid keys"):
        FinetuneConfig.from_dict({"learning_rate": 1})
    (tmp_path / "c.yaml").write_text("lr: 0.001\nbetas: [0.9, 0.98]\npgd_steps: 5\n")
    cfg = FinetuneConfig.from_file(tmp_path / "c.yaml", pgd_steps=7)
    assert cfg.lr == 0.001 and cfg.betas == (0.9, 0.98) and cfg.pgd_steps == 7
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert FinetuneConfig.from_file(tmp_path / "c.json") == cfg
    assert cfg.resolved_eps(64) == pytest.approx(1.5 * 64 / 224)
    assert FinetuneConfig(norm="linf").resolved_eps(224) == pytest.approx(4 / 255)


def test_spent_generator_is_refused(tiny_clip):
    model, _ = tiny_clip
    data = iter(_batches(1, 4))
    with pytest.raises(ValueError, match="re-iterable"):
        finetune(model, data, FinetuneConfig(steps=2, accum_steps=1, batch_size=4, pgd_steps=0), progress=False)


@pytest.mark.parametrize("model_fixture", ["tiny_clip", "tiny_rn_clip"])
def test_trimmed_caption_encoding_matches_encode_text(model_fixture, request):
    from clipag_plugin.train.text import encode_captions, used_length

    model, _ = request.getfixturevalue(model_fixture)
    tokens = clipag.tokenize(["a red square", "a much longer caption about a small blue dot on the left side"])
    assert used_length(tokens) == int((tokens[1] != 0).sum())
    with torch.no_grad():
        full, trimmed = model.encode_text(tokens), encode_captions(model, tokens)
    assert trimmed.shape == full.shape and torch.allclose(trimmed, full, atol=1e-5)
    double = model.double()
    with torch.no_grad():
        assert torch.allclose(encode_captions(double, tokens), double.encode_text(tokens), atol=1e-12)


def test_bf16_autocast_and_frozen_batchnorm_on_cnn_tower(tiny_rn_clip):
    model, _ = tiny_rn_clip
    stats = {k: v.clone() for k, v in model.visual.state_dict().items() if "running" in k}
    conv = model.visual.conv1.weight.clone()
    seen = []
    cfg = FinetuneConfig(steps=1, accum_steps=1, batch_size=4, precision="bf16", train_batchnorm=False, lr=1e-3,
                         warmup_steps=0, pgd_steps=1)
    finetune(model, _batches(1, 4, 64), cfg, progress=False, on_step=lambda step, m: seen.append((step, m["loss"])))
    after = model.visual.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in stats.items())  # no BatchNorm statistics moved
    assert not torch.equal(conv, model.visual.conv1.weight) and model.dtype == torch.float32
    assert seen[0][0] == 1 and torch.isfinite(torch.tensor(seen[0][1]))


def test_resume_refuses_another_base_model_and_warns_on_changed_settings(tiny_clip, tmp_path):
    from open_clip.model import CLIP

    from clipag_plugin.model import ClipagModel

    model, _ = tiny_clip
    cfg = FinetuneConfig(steps=1, accum_steps=1, batch_size=4, pgd_steps=0, checkpoint_every=1)
    finetune(model, _batches(1, 4), cfg, out_dir=tmp_path / "run", progress=False, export=False)
    with pytest.warns(UserWarning, match="steps"):
        finetune(model, _batches(1, 4), cfg.replace(steps=2), out_dir=tmp_path / "run", progress=False,
                 export=False, resume=True)
    other_inner = CLIP(**json.loads((tmp_path / "tiny-clip" / "open_clip_config.json").read_text())["model_cfg"])
    other = ClipagModel(other_inner, 32, (0.5,) * 3, (0.5,) * 3, name="other")
    with pytest.raises(ValueError, match="different base model"):
        finetune(other, _batches(1, 4), cfg, out_dir=tmp_path / "run", progress=False, resume=True)
