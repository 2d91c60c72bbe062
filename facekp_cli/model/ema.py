"""Exponential moving average of the weights, through Lightning's WeightAveraging callback.

Validation and saved checkpoints use the averaged weights (Lightning swaps them in), so the best
checkpoint, eval, export and infer all see the EMA model; `--resume` restores both copies.
The decay warms up as (1 + n) / (10 + n) so a short CPU run is not dominated by its random start.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import WeightAveraging


def warmup_ema(decay: float):
    """AveragedModel's avg_fn: EMA with the warm-up above, capped at `decay`."""

    def average(averaged, current, num_averaged):
        steps = float(num_averaged)
        rate = min(decay, (1.0 + steps) / (10.0 + steps))
        return averaged * rate + current * (1.0 - rate)

    return average


class WarmupEMA(WeightAveraging):
    """EMA updated after every optimizer step."""

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, avg_fn=warmup_ema(decay))
        self.decay = decay

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None
