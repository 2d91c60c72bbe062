"""Losses: values, Wing's continuity and the unlabelled-point mask."""

from __future__ import annotations

import math

import pytest
import torch

from facekp_cli.model.losses import masked_loss, wing


def test_mse_and_l1_average_over_labelled_coordinates_only():
    pred = torch.zeros(2, 14, 2)
    target = torch.full((2, 14, 2), 0.5)
    target[1, 3] = float("nan")  # unlabelled: must not count or poison the mean
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[1, 3] = False
    assert masked_loss(pred, target, mask, "mse").item() == pytest.approx(0.25)
    assert masked_loss(pred, target, mask, "l1").item() == pytest.approx(0.5)


def test_masked_points_get_no_gradient():
    pred = torch.zeros(1, 14, 2, requires_grad=True)
    target = torch.ones(1, 14, 2)
    mask = torch.zeros(1, 14, dtype=torch.bool)
    mask[0, 0] = True
    masked_loss(pred, target, mask, "wing").backward()
    assert pred.grad[0, 0].abs().sum() > 0
    assert pred.grad[0, 1:].abs().sum() == 0


def test_wing_is_continuous_at_w_and_logarithmic_below():
    w, eps = 0.04, 0.008
    below, above = wing(torch.tensor([w - 1e-7]), w, eps), wing(torch.tensor([w + 1e-7]), w, eps)
    assert below.item() == pytest.approx(above.item(), abs=1e-5)
    small = wing(torch.tensor([0.01]), w, eps).item()
    assert small == pytest.approx(w * math.log(1 + 0.01 / eps))
    # beyond w it is L1 shifted by a constant: slope one
    assert (wing(torch.tensor([0.5]), w, eps) - wing(torch.tensor([0.3]), w, eps)).item() == pytest.approx(
        0.2
    )


def test_all_masked_batch_gives_zero_not_nan():
    pred = torch.randn(2, 14, 2)
    loss = masked_loss(pred, torch.randn(2, 14, 2), torch.zeros(2, 14, dtype=torch.bool), "mse")
    assert loss.item() == 0.0
