"""The One-Euro filter: less jitter at rest, little lag in motion, NaN-safe (pure numbers, no model)."""

from __future__ import annotations

import numpy as np

from facekp_cli.video.smoothing import OneEuroFilter, OneEuroParams

FPS = 25.0


def run_filter(
    signal: np.ndarray, params: OneEuroParams = OneEuroParams(), scale: float = 50.0
) -> np.ndarray:
    smoother = OneEuroFilter(params)
    return np.stack([smoother(value, index / FPS, scale) for index, value in enumerate(signal)])


def test_still_noisy_points_jitter_far_less():
    rng = np.random.default_rng(0)
    truth = np.array([[100.0, 80.0], [150.0, 82.0]])
    raw = truth + rng.normal(0, 1.5, size=(200, 2, 2))  # 1.5 px of model noise on a still face
    smoothed = run_filter(raw)
    jitter_raw = np.linalg.norm(np.diff(raw[50:], axis=0), axis=-1).mean()
    jitter_smoothed = np.linalg.norm(np.diff(smoothed[50:], axis=0), axis=-1).mean()
    assert jitter_smoothed < 0.3 * jitter_raw
    # and it stays on the face: no drift away from the truth
    assert np.abs(smoothed[50:].mean(axis=0) - truth).max() < 0.5


def test_speed_raises_the_cutoff_so_a_moving_face_lags_little():
    speed_px_per_frame = 8.0
    truth = np.array([[[t * speed_px_per_frame, 100.0]] for t in range(100)])
    lag_adaptive = (truth - run_filter(truth))[60:, 0, 0].mean() / speed_px_per_frame
    lag_fixed = (truth - run_filter(truth, OneEuroParams(beta=0.0)))[60:, 0, 0].mean() / speed_px_per_frame
    # beta = 0 is a plain low-pass at min_cutoff: several frames behind; the One-Euro speed term catches up
    assert lag_fixed > 3.0
    assert 0 <= lag_adaptive < 0.5 * lag_fixed


def test_first_sample_passes_unchanged_and_reset_forgets():
    smoother = OneEuroFilter()
    first = np.array([[10.0, 20.0]])
    assert np.array_equal(smoother(first, 0.0), first)
    smoother(np.array([[50.0, 20.0]]), 0.04)
    smoother.reset()
    assert np.array_equal(smoother(np.array([[90.0, 5.0]]), 0.08), [[90.0, 5.0]])


def test_nan_points_pass_through_and_restart_cleanly():
    smoother = OneEuroFilter()
    smoother(np.array([[10.0, 10.0], [20.0, 20.0]]), 0.0)
    out = smoother(np.array([[np.nan, np.nan], [20.5, 20.0]]), 0.04)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    # the point comes back far away: it starts from its new value, not from a blend with the old
    back = smoother(np.array([[300.0, 300.0], [20.5, 20.0]]), 0.08)
    assert np.allclose(back[0], [300.0, 300.0])


def test_a_clock_that_does_not_advance_is_not_a_division_by_zero():
    smoother = OneEuroFilter()
    smoother(np.array([1.0]), 1.0)
    assert np.isfinite(smoother(np.array([2.0]), 1.0)).all()
