"""Temporal smoothing of keypoints across video frames: the One-Euro filter.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cut-off
rises with the signal's speed: a still face is smoothed hard (little jitter), a moving one
lightly (little lag). Two knobs: `min_cutoff` (Hz) sets the smoothing at rest, `beta` how fast the
cut-off rises with speed. Speed is measured in face sizes per second (pixels divided by the
face's scale, e.g. the outer-eye-corner distance), so one setting suits small and large faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float = 1.0  # Hz: the cut-off at rest; lower is smoother and slower
    beta: float = 2.0  # cut-off rise per (face size per second) of speed; higher follows motion faster
    d_cutoff: float = 1.0  # Hz: smoothing of the speed estimate itself


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters an array of values (e.g. (K, 2) points) sample by sample; NaN values pass through.

    `scale` (per call) is what one unit of speed is measured in: pixels per face size.
    """

    def __init__(self, params: OneEuroParams = OneEuroParams()) -> None:
        self.params = params
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time: float | None = None

    def reset(self) -> None:
        self._value = self._speed = self._time = None

    def __call__(self, value: np.ndarray, time_s: float, scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self._value is None or self._time is None or time_s <= self._time:
            # first sample (or a clock that did not move): nothing to smooth against
            self._value = value.copy()
            self._speed = np.zeros_like(value)
            self._time = time_s
            return value.copy()
        dt = time_s - self._time
        p = self.params
        known = np.isfinite(value) & np.isfinite(self._value)
        raw_speed = np.where(known, (value - self._value) / dt, 0.0)
        speed = self._speed + _alpha(p.d_cutoff, dt) * (raw_speed - self._speed)
        cutoff = p.min_cutoff + p.beta * np.abs(speed) / max(scale, 1e-6)
        alpha = _alpha(cutoff, dt)
        smoothed = self._value + alpha * (value - self._value)
        # a point seen for the first time (or again after NaN) starts from its raw value
        smoothed = np.where(known, smoothed, value)
        self._value = smoothed  # NaN where the point is missing, so it restarts when it comes back
        self._speed = np.where(known, speed, 0.0)
        self._time = time_s
        return smoothed
