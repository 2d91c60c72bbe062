"""OneCycleThenHold: OneCycleLR's rates up to the hold step, a constant rate from there on."""

from __future__ import annotations

import torch

from facekp_cli.model.lightning_module import OneCycleThenHold


def _rates(make_scheduler, steps=99):
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=3e-3)
    scheduler = make_scheduler(optimizer)
    seen = []
    for _ in range(steps):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["betas"][0]))
        optimizer.step()
        scheduler.step()
    return seen, scheduler


def _one_cycle(optimizer, **hold):
    if not hold:
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=100, pct_start=0.25)
    return OneCycleThenHold(optimizer, max_lr=3e-3, total_steps=100, pct_start=0.25, **hold)


def test_without_a_hold_the_rates_are_one_cycles_bit_for_bit():
    plain, _ = _rates(_one_cycle)
    never, _ = _rates(lambda o: _one_cycle(o, hold_from=None, hold_lr=1e-4))
    assert never == plain


def test_from_the_hold_step_the_rate_is_constant_and_before_it_unchanged():
    plain, _ = _rates(_one_cycle)
    held, _ = _rates(lambda o: _one_cycle(o, hold_from=50, hold_lr=9e-4))
    assert held[:50] == plain[:50]
    assert {rate for rate, _ in held[50:]} == {9e-4}
    assert [beta for _, beta in held] == [beta for _, beta in plain]  # the momentum cycles as before


def test_a_resumed_schedule_takes_its_hold_from_the_settings_not_the_checkpoint():
    _, first = _rates(lambda o: _one_cycle(o, hold_from=50, hold_lr=9e-4), steps=60)
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=3e-3)
    resumed = _one_cycle(optimizer, hold_from=50, hold_lr=3e-4)
    resumed.load_state_dict(first.state_dict())
    assert resumed.last_epoch == 60
    assert resumed.hold_lr == 3e-4
    optimizer.step()
    resumed.step()
    assert optimizer.param_groups[0]["lr"] == 3e-4
