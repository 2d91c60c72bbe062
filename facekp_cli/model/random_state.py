"""The training process's random state travels in the checkpoint, so a resumed run draws on.

`seed_everything` at start-up seeds a resumed process as it seeded the run's first: without the
saved state, the first resumed epoch shuffled in epoch 0's order and drew epoch 0's augmentation
again, and a run preempted at every epoch would have trained on one order forever. The state is
taken when a checkpoint is written (after the epoch's validation: nothing random comes between it
and the next epoch) and put back as the checkpoint is read (before the resumed run creates its
training iterator, which draws). In one process (`data.num_workers` 0, or the batched augmentation
backend) a resumed run then trains exactly as the uninterrupted one, weights included. Worker
processes start afresh on a resume and their random streams are not saved, so with workers the
order and augmentation after a resume are new draws: not epoch 0's again, the same on every resume
of that checkpoint, but not the uninterrupted run's.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def capture() -> dict[str, Any]:
    """torch, numpy and Python RNG states as tensors and plain lists (a weights_only load reads them)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(python_state), "gauss": python_gauss},
    }


def restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class RandomState(L.Callback):
    def state_dict(self) -> dict[str, Any]:
        return capture()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # At once: a resumed run creates its training iterator (which draws) before any training hook.
        restore(state_dict)
