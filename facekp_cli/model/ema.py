"""Exponential moving average of the weights, through Lightning's WeightAveraging callback.

Validation and saved checkpoints use the averaged weights (Lightning swaps them in), so the best
checkpoint, eval, export and infer all see the EMA model; `--resume` restores both copies.
The decay warms up as (1 + n) / (10 + n) so a short CPU run is not dominated by its random start.

With `swa_from` (a fraction of the run's optimizer steps), the average restarts there and becomes the
plain mean of every later step's weights (stochastic weight averaging, Izmailov et al. 2018): a
flatter solution than the last, annealed weights. A model trained on synthetic faces stops
improving on real ones after about two thirds of its run while the synthetic fit goes on
(docs/bench/data.md, "How long to train"); the mean over the later steps leaves out that late fit.
BatchNorm statistics are averaged with the weights, as the EMA does, not re-estimated.

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


def ema_then_mean(decay: float, switch: Callable[[], int | None]) -> Callable:
    """EMA (as warmup_ema) until update number switch(); from there the plain mean of the updates.

    `num_averaged` counts the updates before this one; the first update of the mean phase restarts
    the average at the current weights, so it is exactly the mean of the weights from `switch` on."""
    ema = warmup_ema(decay)

    def average(averaged, current, num_averaged):
        start = switch()
        done = int(num_averaged)
        if start is None or done < start:
            return ema(averaged, current, num_averaged)
        if done == start:
            return current.clone()
        return averaged + (current - averaged) / float(done - start + 1)

    return average


def floats_only(avg_fn: Callable) -> Callable:
    """Wrap an avg_fn so that non-float tensors (indices, counters, masks) are copied, never averaged."""

    def average(averaged, current, num_averaged):
        if not (averaged.is_floating_point() or averaged.is_complex()):
            return current.to(averaged.dtype)
        return avg_fn(averaged, current, num_averaged)

    return average


def switch_step(swa_from: float, total_steps: int) -> int:
    """The optimizer step where weight averaging (and `train.swa_lr`'s held rate) starts."""
    return int(swa_from * total_steps)


class WarmupEMA(WeightAveraging):
    """EMA updated after every optimizer step; with `swa_from` > 0 the mean of the last steps instead."""

    def __init__(self, decay: float, swa_from: float = 0.0) -> None:
        super().__init__(use_buffers=True, avg_fn=floats_only(ema_then_mean(decay, lambda: self._switch)))
        self.decay = decay
        self.swa_from = swa_from
        self._switch: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # swa_from of the schedule's total steps (not of what is left: the same step on a resumed run),
        # known once the data is set up.
        if self.swa_from > 0:
            self._switch = switch_step(self.swa_from, int(trainer.estimated_stepping_batches))
        super().on_train_start(trainer, pl_module)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None
