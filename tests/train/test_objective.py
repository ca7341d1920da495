"""Loss functions: known answers, invariances, exceptions, float64 gradchecks."""

from __future__ import annotations

import math

import pytest
import torch

from clipag_plugin.train.objective import clip_logit_scale, combine_losses, contrastive_loss, fare_loss


def test_contrastive_known_answers():
    eye = torch.eye(4, dtype=torch.float64)
    # orthogonal, aligned pairs at a high temperature: near zero; at scale 0: log(N)
    assert float(contrastive_loss(eye, eye, 100.0)) < 1e-30 + 1e-6
    assert float(contrastive_loss(eye, eye, 0.0)) == pytest.approx(math.log(4))
    # features are normalized inside: scaling an embedding changes nothing
    a, b = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    assert torch.allclose(contrastive_loss(a * 3, b, 10.0), contrastive_loss(a, b, 10.0))


def test_contrastive_is_permutation_invariant():
    a, b = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    perm = torch.randperm(6)
    assert torch.allclose(contrastive_loss(a, b, 20.0), contrastive_loss(a[perm], b[perm], 20.0))


def test_losses_gradcheck_float64():
    a = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: contrastive_loss(x, y, 7.0), (a, b))
    assert torch.autograd.gradcheck(fare_loss, (a, b))


def test_fare_and_combine():
    a = torch.zeros(2, 3)
    b = torch.ones(2, 3)
    assert float(fare_loss(a, b)) == pytest.approx(3.0)
    total = combine_losses(torch.tensor(2.0), torch.tensor(1.0), torch.tensor(4.0), clean_weight=0.25, fare_weight=0.5)
    assert float(total) == pytest.approx(0.75 * 2 + 0.25 * 1 + 0.5 * 4)
    with pytest.raises(ValueError, match="clean_weight"):
        combine_losses(torch.tensor(1.0), clean_weight=1.5)
    with pytest.raises(ValueError, match="as many images"):
        contrastive_loss(torch.randn(2, 4), torch.randn(3, 4), 1.0)
    assert float(clip_logit_scale(torch.tensor(10.0))) == pytest.approx(100.0)
