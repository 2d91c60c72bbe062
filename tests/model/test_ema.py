"""The EMA averages weights and float buffers only: indices and counters follow the live model."""

from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from facekp_cli.keypoints import FLIP_INDEX
from facekp_cli.model.ema import WarmupEMA, ema_then_mean, floats_only, warmup_ema
from facekp_cli.model.resnet import HEADS, ResNet18


@pytest.mark.parametrize("head", HEADS)
def test_integer_buffers_are_never_averaged(head):
    """200 updates of the warm-up formula once turned flip_index [1, 0, 3, 2, ...] into [1, 0, 2, 2, ...]."""
    torch.manual_seed(0)
    model = ResNet18(3, 14, width=8, head=head, flip_index=FLIP_INDEX)
    averaged = AveragedModel(model, avg_fn=floats_only(warmup_ema(0.995)), use_buffers=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(200):
        optimizer.zero_grad()
        model(torch.randn(4, 3, 32, 32)).square().mean().backward()
        optimizer.step()
        averaged.update_parameters(model)
    ema = averaged.module
    assert ema.flip_index.tolist() == list(FLIP_INDEX)
    live_counters = {n: b for n, b in model.named_buffers() if not b.is_floating_point()}
    assert live_counters, "the model has integer buffers (flip_index, num_batches_tracked)"
    for name, buffer in ema.named_buffers():
        if not buffer.is_floating_point():
            assert torch.equal(buffer, live_counters[name]), name
    # Float tensors are still averaged: the EMA lags behind the live weights.
    live, slow = dict(model.named_parameters()), dict(ema.named_parameters())
    assert any(not torch.allclose(live[n], slow[n]) for n in live)
    running = [n for n, b in model.named_buffers() if n.endswith("running_mean")]
    assert not torch.allclose(dict(model.named_buffers())[running[0]], dict(ema.named_buffers())[running[0]])


def test_the_callback_uses_the_guarded_average():
    callback = WarmupEMA(0.99)
    avg_fn = callback._kwargs["avg_fn"]
    index = torch.tensor([1, 0, 3, 2])
    assert torch.equal(avg_fn(index, index, torch.tensor(50)), index)
    mixed = avg_fn(torch.zeros(3), torch.ones(3), torch.tensor(0))
    assert torch.allclose(mixed, torch.full((3,), 0.9))  # warm-up rate 1/10 at step 0


def test_from_the_switch_the_average_is_the_plain_mean_of_the_weights_and_before_it_the_ema():
    net = torch.nn.Linear(3, 2)
    averaged = AveragedModel(net, avg_fn=floats_only(ema_then_mean(0.9, lambda: 4)), use_buffers=True)
    ema = AveragedModel(net, avg_fn=floats_only(warmup_ema(0.9)), use_buffers=True)
    torch.manual_seed(0)
    seen = []
    for step in range(10):
        with torch.no_grad():
            net.weight.copy_(torch.randn(2, 3))
        seen.append(net.weight.detach().clone())
        averaged.update_parameters(net)
        if step < 4:
            ema.update_parameters(net)
            assert torch.allclose(averaged.module.weight, ema.module.weight)  # the EMA until the switch
    assert torch.allclose(averaged.module.weight, torch.stack(seen[4:]).mean(0), atol=1e-6)
