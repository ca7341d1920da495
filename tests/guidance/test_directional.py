"""Directional CLIP losses, threshold rejection, perspective patches and the ImageNet templates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipag_plugin.guidance import directional as D
from clipag_plugin.guidance.templates import IMAGENET_TEMPLATES, compose_text


def _unit(*values: float) -> torch.Tensor:
    return F.normalize(torch.tensor([values], dtype=torch.float64), dim=-1)


# --- templates ------------------------------------------------------------------------------


def test_templates_are_the_79_distinct_imagenet_ones():
    assert len(IMAGENET_TEMPLATES) == 79
    assert len(set(IMAGENET_TEMPLATES)) == 79
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    for known in ("a bad photo of a {}.", "itap of my {}.", "a origami {}.", "the {} in a video game.",
                  "a photo of the hard to see {}.", "art of the {}."):
        assert known in IMAGENET_TEMPLATES


def test_compose_text():
    texts = compose_text("fire")
    assert len(texts) == 79 and "a painting of the fire." in texts
    with pytest.raises(ValueError, match="non-empty"):
        compose_text("  ")


# --- directions and losses ------------------------------------------------------------------


def test_directional_loss_known_answers():
    d = _unit(1.0, 2.0, -1.0)
    other = _unit(2.0, -1.0, 0.0)  # orthogonal to d
    assert D.directional_loss(d, d).item() == pytest.approx(0.0, abs=1e-12)
    assert D.directional_loss(-d, d).item() == pytest.approx(2.0)
    assert D.directional_loss(other, d).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same CLIP model"):
        D.directional_loss(torch.ones(2, 3), torch.ones(1, 4))


def test_loss_is_zero_when_image_change_aligns_with_text_change():
    source = torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64)  # unnormalized on purpose
    stylized = torch.tensor([[0.0, 0.5, 0.0], [0.0, 7.0, 0.0]], dtype=torch.float64)
    text_dir = _unit(-1.0, 1.0, 0.0)  # e2 - e1, the change from source to stylized
    assert torch.allclose(D.image_direction(stylized, source), text_dir.expand(2, 3))
    assert D.global_directional_loss(stylized, source, text_dir).item() == pytest.approx(0.0, abs=1e-12)
    assert D.patch_directional_loss(stylized, source, text_dir, threshold=0.7).item() == pytest.approx(0.0, abs=1e-12)
    # moving the other way costs the maximum
    away = torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)
    assert D.global_directional_loss(away, source, _unit(-1.0, -1.0, 0.0).neg()).item() == pytest.approx(2.0)


def test_reject_below_zeroes_value_and_gradient():
    losses = torch.tensor([0.2, 0.69, 0.7, 1.5], requires_grad=True)
    kept = D.reject_below(losses, 0.7)
    assert kept.tolist() == pytest.approx([0.0, 0.0, 0.7, 1.5])
    kept.sum().backward()
    assert losses.grad.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert D.reject_below(losses, None) is losses


def test_patch_loss_threshold_rejection_changes_the_mean():
    source = _unit(1.0, 0.0, 0.0)
    text_dir = _unit(-1.0, 1.0, 0.0)
    good = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)  # loss 0
    bad = torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)  # loss 1 (orthogonal direction)
    patches = torch.cat([good, bad, bad, good])
    per_patch = D.directional_loss(D.image_direction(patches, source), text_dir)
    assert per_patch.tolist() == pytest.approx([0.0, 1.0, 1.0, 0.0], abs=1e-12)
    assert D.patch_directional_loss(patches, source, text_dir, threshold=None).item() == pytest.approx(0.5)
    assert D.patch_directional_loss(patches, source, text_dir, threshold=0.7).item() == pytest.approx(0.5)
    assert D.patch_directional_loss(patches, source, text_dir, threshold=1.5).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least one"):
        D.patch_directional_loss(patches[:0], source, text_dir)


def test_patch_tricks_validates_threshold():
    assert D.PatchTricks() == D.PatchTricks(perspective=True, threshold=0.7, patch_loss=True)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        D.PatchTricks(threshold=3.0)


def test_gradcheck_directional_pieces():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    source = torch.randn(1, 5, dtype=torch.float64, generator=g)
    text_dir = F.normalize(torch.randn(1, 5, dtype=torch.float64, generator=g), dim=-1)
    assert torch.autograd.gradcheck(lambda f: D.image_direction(f, source), (feats,))
    assert torch.autograd.gradcheck(lambda f: D.global_directional_loss(f, source, text_dir), (feats,))
    assert torch.autograd.gradcheck(lambda f: D.patch_directional_loss(f, source, text_dir, None), (feats,))


def test_text_direction_with_tiny_clip(tiny_clip):
    import clipag

    model, _ = tiny_clip
    direction = D.text_direction(model, clipag.tokenize, "oil painting")
    assert direction.shape == (1, model.visual.output_dim)
    assert direction.norm().item() == pytest.approx(1.0, abs=1e-5)
    feats = D.template_text_features(model, clipag.tokenize, "oil painting", IMAGENET_TEMPLATES[:3])
    tokens = clipag.tokenize(compose_text("oil painting", IMAGENET_TEMPLATES[:3]))
    expected = F.normalize(model.encode_text(tokens).mean(0, keepdim=True), dim=-1)
    assert torch.allclose(feats, expected, atol=1e-5)


# --- patches --------------------------------------------------------------------------------


def test_sample_patch_params_shapes_bounds_and_replay():
    p = D.sample_patch_params(40, 60, 16, 20, distortion=0.5, generator=torch.Generator().manual_seed(1))
    q = D.sample_patch_params(40, 60, 16, 20, distortion=0.5, generator=torch.Generator().manual_seed(1))
    assert len(p) == 16 and p.offsets.shape == (16, 2) and p.warp.start.shape == p.warp.end.shape == (16, 4, 2)
    assert torch.equal(p.offsets, q.offsets) and torch.equal(p.warp.end, q.warp.end)
    assert (p.offsets[:, 0] <= 40 - 20).all() and (p.offsets[:, 1] <= 60 - 20).all() and (p.offsets >= 0).all()
    d = 0.5 * 10  # corners move inwards by at most distortion x half the side
    end = p.warp.end
    left, right, top, bottom = end[:, [0, 3], 0], end[:, [1, 2], 0], end[:, [0, 1], 1], end[:, [2, 3], 1]
    assert (left >= 0).all() and (left <= d).all() and (top >= 0).all() and (top <= d).all()
    assert (right <= 19).all() and (right >= 19 - d).all() and (bottom <= 19).all() and (bottom >= 19 - d).all()
    off = D.sample_patch_params(40, 60, 4, 20, perspective=False, generator=torch.Generator().manual_seed(1))
    assert off.warp is None


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "at least one"), ({"size": 50}, "shorter side"), ({"distortion": 1.5}, "distortion")],
)
def test_sample_patch_params_errors(kwargs, match):
    args = {"height": 40, "width": 60, "n": 4, "size": 20}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        D.sample_patch_params(**args)


def test_apply_patches_crops_warps_and_resizes():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 32, 48, generator=g)
    plain = D.sample_patch_params(32, 48, 5, 16, perspective=False, generator=g)
    crops = D.apply_patches(image, plain)
    y, x = plain.offsets[2].tolist()
    assert crops.shape == (5, 3, 16, 16) and torch.equal(crops[2], image[0, :, y : y + 16, x : x + 16])
    from clipag_plugin.guidance.warp import PerspectiveParams

    corners = torch.tensor([[0.0, 0.0], [15.0, 0.0], [15.0, 15.0], [0.0, 15.0]]).expand(5, 4, 2)
    identity = D.PatchParams(plain.offsets, 16, PerspectiveParams(corners, corners.clone()))  # start -> start
    assert torch.allclose(D.apply_patches(image, identity), crops, atol=1e-5)
    warped = D.sample_patch_params(32, 48, 5, 16, distortion=0.5, generator=g)
    out = D.apply_patches(torch.ones(1, 3, 32, 48), warped, out_size=24)
    assert out.shape == (5, 3, 24, 24)
    assert (out[:, :, 12, 12] > 0.99).all()  # the centre stays inside
    moved = (warped.warp.end - warped.warp.start).abs().amax(dim=(1, 2)) > 1.0
    assert (out[moved].amin(dim=(1, 2, 3)) < 0.5).all()  # fill 0 where a corner moved in
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        D.apply_patches(torch.rand(2, 3, 32, 48), plain)


def test_gradcheck_apply_patches():
    g = torch.Generator().manual_seed(3)
    params = D.sample_patch_params(10, 10, 2, 8, generator=g)
    from clipag_plugin.guidance.warp import PerspectiveParams

    warp = PerspectiveParams(params.warp.start.double(), params.warp.end.double())
    params = D.PatchParams(params.offsets, params.size, warp)
    image = torch.rand(1, 2, 10, 10, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: D.apply_patches(x, params, out_size=6), (image,))
