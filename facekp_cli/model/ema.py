"""Exponential moving average of the weights, through Lightning's WeightAveraging callback.

Validation and saved checkpoints use the averaged weights (Lightning swaps them in), so the best
checkpoint, eval, export and infer all see the EMA model; `--resume` restores both copies.
The decay warms up as (1 + n) / (10 + n) so a short CPU run is not dominated by its random start.

Only floating-point tensors are averaged. Buffers are averaged too (`use_buffers=True`, so
BatchNorm statistics follow the weights), but an integer buffer is an index or a counter, not a
quantity: averaging `ResNet18.flip_index` and truncating it back to integers paired the wrong
points in validation's flip test (issue 17). Every non-float tensor, of any module a future head
adds, takes the current model's value instead.
"""

from __future__ import annotations

from collections.abc import Callable

from lightning.pytorch.callbacks import WeightAveraging


def warmup_ema(decay: float) -> Callable:
    """AveragedModel's avg_fn: EMA with the warm-up above, capped at `decay`."""

    def average(averaged, current, num_averaged):
        steps = float(num_averaged)
        rate = min(decay, (1.0 + steps) / (10.0 + steps))
        return averaged * rate + current * (1.0 - rate)

    return average


def floats_only(avg_fn: Callable) -> Callable:
    """Wrap an avg_fn so that non-float tensors (indices, counters, masks) are copied, never averaged."""

    def average(averaged, current, num_averaged):
        if not (averaged.is_floating_point() or averaged.is_complex()):
            return current.to(averaged.dtype)
        return avg_fn(averaged, current, num_averaged)

    return average


class WarmupEMA(WeightAveraging):
    """EMA updated after every optimizer step."""

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, avg_fn=floats_only(warmup_ema(decay)))
        self.decay = decay

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None
