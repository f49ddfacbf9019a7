"""The one σ of the package: ``sigma_weighted(eta, w)`` and ``sigma(ps, det_g)`` built on it, against
the standard formula of cy-geometry.md written independently here, exact hand-computed values and the
invariances of σ."""
from __future__ import annotations

import numpy as np
import pytest

from ntkflow.manifolds import fs_det, preset, sample, sigma, sigma_weighted


def _sigma_reference(eta, w):
    """cy-geometry.md: σ = mean(w · |1 − η · Vol_CY / Vol_K|) / Vol_CY, Vol_CY = mean(w), Vol_K = mean(w η)."""
    vol_cy = np.mean(w)
    vol_k = np.mean(w * eta)
    return np.mean(w * np.abs(1.0 - eta * vol_cy / vol_k)) / vol_cy


def test_sigma_weighted_exact_values():
    # ⟨η⟩_w = (1·1 + 3·5)/4 = 4;  σ = (1·|1 − 1/4| + 3·|1 − 5/4|)/4 = 1.5/4
    assert sigma_weighted(np.array([1.0, 5.0]), np.array([1.0, 3.0])) == pytest.approx(0.375, rel=1e-15)
    # equal weights, η ∈ {1, 3}: ⟨η⟩ = 2, σ = 1/2
    assert sigma_weighted(np.array([1.0, 3.0, 1.0, 3.0]), np.ones(4)) == pytest.approx(0.5, rel=1e-15)
    # constant η (the Ricci-flat case): σ = 0 exactly
    assert sigma_weighted(np.full(7, 2.5), np.arange(1.0, 8.0)) == 0.0


def test_sigma_weighted_matches_reference_and_invariances():
    rng = np.random.default_rng(3)
    eta = rng.lognormal(sigma=0.4, size=1000)
    w = rng.exponential(size=1000)
    ref = _sigma_reference(eta, w)
    assert sigma_weighted(eta, w) == pytest.approx(ref, rel=1e-12)
    assert 0.05 < ref < 1.0  # a constructed case far from 0, so the comparison is not vacuous
    # invariant under η → aη (κ changes, σ does not) and w → bw (normalisation of the weights)
    for a, b in ((7.0, 1.0), (1.0, 1e-3), (0.02, 50.0)):
        assert sigma_weighted(a * eta, b * w) == pytest.approx(ref, rel=1e-12)
    # a change of η itself changes σ
    assert abs(sigma_weighted(eta ** 2, w) - ref) > 0.05


def test_sigma_of_pointset_is_sigma_weighted():
    ps = sample(preset("fermat-quintic"), 2000, seed=1)
    det = fs_det(ps)
    s = sigma(ps, det)
    assert s == pytest.approx(_sigma_reference(det / ps.omega_sq, ps.weights), rel=1e-12)
    assert s == sigma_weighted(det / ps.omega_sq, ps.weights)
    assert 0.2 < s < 0.6  # σ of the FS metric on the Fermat quintic ≈ 0.37


def test_sigma_weighted_nan_and_bad_input():
    assert np.isnan(sigma_weighted(np.array([1.0, np.nan]), np.ones(2)))
    with pytest.raises(ValueError, match="eta, w"):
        sigma_weighted(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="eta, w"):
        sigma_weighted(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="w: the weights must have a positive sum"):
        sigma_weighted(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="eta: received no points"):
        sigma_weighted(np.ones(0), np.ones(0))
