"""A run interrupted after an epoch and resumed trains on what the uninterrupted run trains on.

Before the random state travelled in the checkpoint, a resumed process drew its first epoch from a
freshly seeded RNG, i.e. in epoch 0's order again: a run preempted at every epoch would have trained
on one order forever, with nothing in its logs to say so.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from facekp_cli.services import train as service


class _BatchOrder(L.Callback):
    def __init__(self) -> None:
        self.indices: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.indices.append(batch["index"].tolist())


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            raise KeyboardInterrupt


def _interrupted(tiny_settings, name, **extra):
    settings = tiny_settings(
        **{"train.epochs": 3, "tracking.enabled": False, "train.run_name": name}, **extra
    )
    order = _BatchOrder()
    with pytest.raises(service.TrainingInterrupted):
        service.run(settings, callbacks=[order, _StopAfterFirstEpoch()])
    return settings.train.out_dir / name / "last.ckpt", order.indices


def _resume(tiny_settings, last):
    order = _BatchOrder()
    result = service.run(tiny_settings(**{"train.epochs": None, "train.resume": last}), callbacks=[order])
    return result, order.indices


@pytest.mark.parametrize("backend", ["albumentations", "batched"])
def test_in_one_process_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tiny_settings, backend):
    """data.num_workers 0: order, augmentation and every step's arithmetic are the uninterrupted run's."""
    extra = {"data.num_workers": 0, "augment.backend": backend}
    whole = _BatchOrder()
    settings = tiny_settings(
        **{"train.epochs": 3, "tracking.enabled": False, "train.run_name": "whole"}, **extra
    )
    uninterrupted = service.run(settings, callbacks=[whole])
    last, first = _interrupted(tiny_settings, "parts", **extra)
    resumed, rest = _resume(tiny_settings, last)

    assert first + rest == whole.indices
    a = torch.load(uninterrupted.last_checkpoint, weights_only=True)["state_dict"]
    b = torch.load(resumed.last_checkpoint, weights_only=True)["state_dict"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)


def test_with_worker_processes_a_resumed_run_draws_on_and_is_reproducible(tiny_settings, tmp_path):
    """Workers start afresh on a resume (their random streams are not saved), so the draws are new
    ones, not the uninterrupted run's; but they are not epoch 0's again, and the same checkpoint
    resumed twice trains the same batches."""
    last, first = _interrupted(tiny_settings, "parts", **{"data.num_workers": 1})
    copy = tmp_path / "copy" / "last.ckpt"
    copy.parent.mkdir()
    copy.write_bytes(last.read_bytes())
    _, rest = _resume(tiny_settings, last)
    _, again = _resume(tiny_settings, copy)
    per_epoch = len(first)
    assert rest[:per_epoch] != first  # not epoch 0's order replayed
    assert rest == again
    faces = sorted(i for batch in first for i in batch)
    assert sorted(i for batch in rest[:per_epoch] for i in batch) == faces  # one epoch: every face once
