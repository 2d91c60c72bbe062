"""Point-regression losses over normalised [-1, 1] coordinates, masked for unlabelled points."""

from __future__ import annotations

import math

import torch

LOSSES = ("mse", "l1", "wing")


def wing(error: torch.Tensor, w: float, epsilon: float) -> torch.Tensor:
    """Wing loss (Feng et al., CVPR 2018): log-shaped near zero so small errors keep a strong
    gradient, L1 beyond `w`; the constant makes the two pieces meet at |x| = w."""
    absolute = error.abs()
    constant = w - w * math.log1p(w / epsilon)
    return torch.where(absolute < w, w * torch.log1p(absolute / epsilon), absolute - constant)


def elementwise(error: torch.Tensor, kind: str, wing_w: float = 0.04, wing_epsilon: float = 0.008):
    if kind == "mse":
        return error**2
    if kind == "l1":
        return error.abs()
    if kind == "wing":
        return wing(error, wing_w, wing_epsilon)
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")


def masked_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    kind: str,
    wing_w: float = 0.04,
    wing_epsilon: float = 0.008,
) -> torch.Tensor:
    """Mean loss over labelled coordinates. pred, target (B, K, 2); mask (B, K), True = labelled.

    Unlabelled targets may hold anything (even NaN): they are replaced before the loss, so
    neither the value nor the gradient can leak from them.
    """
    mask = mask.to(torch.bool)
    safe_target = torch.where(mask[..., None], target, pred.detach())
    losses = elementwise(pred - safe_target, kind, wing_w, wing_epsilon)
    weights = mask[..., None].expand_as(losses).to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)
