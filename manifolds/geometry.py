r"""Fubini–Study geometry, chart changes and the accuracy measures of a metric on sampled points.

Conventions (../shared/reference/cy-geometry.md), with w the weights and m = dim X:

- FS (t = 1): g_{IJ̄} = (1/π)(δ_{IJ}/|z|² − z̄_I z_J/|z|⁴) = (1/π) ∂_I ∂̄_J log|z|²; pulled back g = P g P†;
- η = det g / |Ω|²;  Vol_CY = mean(w);  Vol_K = mean(w η);  κ = Vol_K / Vol_CY;
- σ = mean(w |1 − η/⟨η⟩_w|) / mean(w), ⟨η⟩_w = Vol_K/Vol_CY  (the L¹ Monge–Ampère error);
- ∫_X h d^{2m}x = mean(w h/|Ω|²)/m!  and ∫_X J^m = Vol_K (= deg Q for g_FS).
"""
from __future__ import annotations

import math

import numpy as np

from ntkflow._checks import finite_array, positive_int

from .charts import fs_det_from_chart, fs_pullback_from_chart
from .pointset import PointSet, pointset_from_points

__all__ = [
    "fs_metric", "pullback", "fs_pullback", "fs_det", "eta", "sigma", "sigma_weighted", "kappa", "volume_cy",
    "volume_kahler", "to_chart", "chart_jacobian", "mean_stderr", "integrate",
]


def fs_metric(points) -> np.ndarray:
    r"""Ambient Fubini–Study metric (n, N, N) complex128 at homogeneous points (n, N):
    g_{IJ̄} = (1/π)(δ_{IJ}/|z|² − z̄_I z_J/|z|⁴)  (Hermitian; t = 1)."""
    z = finite_array("points", points, ndim=2).astype(np.complex128)
    s = np.sum(np.abs(z) ** 2, axis=1)
    g = np.eye(z.shape[1])[None] / s[:, None, None] - np.conj(z)[:, :, None] * z[:, None, :] / (s * s)[:, None, None]
    return g / np.pi


def pullback(jacobian, g_ambient) -> np.ndarray:
    """g = P g P†: (n, dim, N), (n, N, N) → (n, dim, dim); g_{ab̄} = Σ P_{aI} g_{IJ̄} conj(P_{bJ})."""
    P = finite_array("jacobian", jacobian, ndim=3)
    G = finite_array("g_ambient", g_ambient, ndim=3)
    if G.shape[0] != P.shape[0] or G.shape[1:] != (P.shape[2], P.shape[2]):
        raise ValueError(f"g_ambient: expected shape ({P.shape[0]}, {P.shape[2]}, {P.shape[2]}) to match jacobian {P.shape}, received {G.shape}.")
    return np.einsum("xai,xij,xbj->xab", P, G, np.conj(P), optimize=True)


def _check_ps(ps):
    if not isinstance(ps, PointSet):
        raise TypeError(f"ps: expected a PointSet (from sample/load_points), received {type(ps).__name__}.")
    return ps


def fs_pullback(ps: PointSet) -> np.ndarray:
    """Pulled-back FS metric (n, dim, dim) complex128 in each point's chart (closed form, no N×N)."""
    _check_ps(ps)
    r = ps.jacobian[np.arange(len(ps))[:, None], np.arange(ps.dim)[None, :], ps.elim[:, None]]
    return fs_pullback_from_chart(ps.points, ps.kept, ps.elim, r)


def fs_det(ps: PointSet) -> np.ndarray:
    """det of the pulled-back FS metric (n,) float64 (matrix determinant lemma; see charts)."""
    _check_ps(ps)
    r = ps.jacobian[np.arange(len(ps))[:, None], np.arange(ps.dim)[None, :], ps.elim[:, None]]
    return fs_det_from_chart(ps.points, ps.kept, ps.elim, r)


def _det_arg(ps, det_g):
    det = np.asarray(det_g)
    if np.iscomplexobj(det):
        if det.size and np.max(np.abs(det.imag)) > 1e-8 * np.max(np.abs(det.real)):
            raise ValueError("det_g: has a non-negligible imaginary part; pass the real det of a Hermitian metric.")
        det = det.real
    det = finite_array("det_g", det, ndim=1).astype(np.float64)
    if det.shape[0] != len(ps):
        raise ValueError(f"det_g: expected {len(ps)} values (one per point), received {det.shape[0]}.")
    return det


def eta(ps: PointSet, det_g) -> np.ndarray:
    """η = det g / |Ω|² (n,) — constant exactly for the Ricci-flat metric in the class."""
    _check_ps(ps)
    return _det_arg(ps, det_g) / ps.omega_sq


def volume_cy(ps: PointSet) -> float:
    """Vol_CY = mean(w) (= m! ∫|Ω|² d^{2m}x with the weights' normalisation)."""
    return float(np.mean(_check_ps(ps).weights))


def volume_kahler(ps: PointSet, det_g) -> float:
    """Vol_K = mean(w η) = ∫_X J^m (the intersection number for any metric in the class)."""
    return float(np.mean(_check_ps(ps).weights * eta(ps, det_g)))


def kappa(ps: PointSet, det_g) -> float:
    """κ = Vol_K / Vol_CY: the constant in det g_CY = κ |Ω|²."""
    return volume_kahler(ps, det_g) / volume_cy(ps)


def sigma_weighted(eta, w) -> float:
    r"""σ = Σ w |1 − η/⟨η⟩_w| / Σ w with ⟨η⟩_w = Σ w η / Σ w (the L¹ Monge–Ampère error).

    ``eta`` (n,) η = det g/|Ω|² at the points, ``w`` (n,) their Monte-Carlo weights (any positive
    normalisation: σ is invariant under η → aη, w → bw). NaN/inf in ``eta`` give NaN (a metric that is
    not positive definite somewhere); the one σ of the package: every other σ calls this."""
    e = np.asarray(eta, dtype=np.float64)
    wt = np.asarray(w, dtype=np.float64)
    if e.ndim != 1 or wt.shape != e.shape:
        raise ValueError(f"eta, w: expected two 1-D arrays of the same length, received shapes {e.shape} and {wt.shape}.")
    if e.size == 0:
        raise ValueError("eta: received no points; σ needs at least one.")
    total = np.sum(wt)
    if not total > 0:
        raise ValueError(f"w: the weights must have a positive sum, received sum {total!r}; pass the Monte-Carlo weights of the points.")
    k = np.sum(wt * e) / total
    return float(np.sum(wt * np.abs(1.0 - e / k)) / total)


def sigma(ps: PointSet, det_g) -> float:
    r"""σ = E_w|1 − η/⟨η⟩_w| = mean(w |1 − η Vol_CY/Vol_K|)/Vol_CY. 0 iff det g ∝ |Ω|² (Ricci-flat).

    ``det_g`` (n,): det of the pulled-back metric at the points of ``ps``; see :func:`sigma_weighted`."""
    return sigma_weighted(eta(ps, det_g), ps.weights)


def integrate(ps: PointSet, density) -> tuple[float, float]:
    """∫_X h d^{2m}x ≈ mean(w h/|Ω|²)/m! for a density h (n,) (coefficient of d^{2m}x in each chart).
    Returns (value, standard error) with the batch-means error of :func:`mean_stderr`."""
    _check_ps(ps)
    h = finite_array("density", density, ndim=1)
    if h.shape[0] != len(ps):
        raise ValueError(f"density: expected {len(ps)} values, received {h.shape[0]}.")
    vals = ps.weights * np.real(h) / ps.omega_sq / math.factorial(ps.dim)
    return mean_stderr(vals)


def mean_stderr(values, n_batches: int = 50) -> tuple[float, float]:
    """(mean, standard error) by batch means over contiguous blocks (robust to the correlation of the
    d points of one line, which are stored consecutively)."""
    v = finite_array("values", values, ndim=1).astype(np.float64)
    n_batches = positive_int("n_batches", n_batches)
    n = len(v)
    if n < 2:
        raise ValueError(f"values: need at least 2 values for an error bar, received {n}.")
    b = min(n_batches, n // 2)
    size = n // b
    means = v[: b * size].reshape(b, size).mean(axis=1)
    return float(v.mean()), float(means.std(ddof=1) / math.sqrt(b))


# ---- charts ---------------------------------------------------------------------------------


def to_chart(ps: PointSet, patch=None, elim=None) -> PointSet:
    """The same points in another chart (patch coordinate = 1, eliminated coordinate ``elim``).

    ``patch``/``elim``: int or (n,) arrays; None = the default rule (largest |z|, largest |∂Q|).
    Weights (a function on X) are carried over; |Ω|², Jacobians and points are recomputed."""
    _check_ps(ps)
    if patch is not None:
        pa = np.broadcast_to(np.asarray(patch), (len(ps),))
        if np.any(np.abs(ps.points[np.arange(len(ps)), pa]) == 0):
            raise ValueError("patch: a point has z_patch = 0 there; choose a coordinate that is non-zero at every point.")
    return pointset_from_points(ps.manifold, ps.points, ps.weights, patch=patch, elim=elim)


def chart_jacobian(ps_from: PointSet, ps_to: PointSet) -> np.ndarray:
    r"""T (n, dim, dim) with T_{ab} = ∂x^{from}_b / ∂x^{to}_a, so that tensors transform as
    g^{to} = T g^{from} T†, Ω^{to} = det(T) Ω^{from} (up to sign), |Ω^{to}|² = |det T|² |Ω^{from}|².

    x^{from}_b = z_{k_b}/z_{p} with (p, k) the patch and kept indices of ``ps_from``; differentiate
    through the embedding of ``ps_to``: T = P^{to} D^T, D_{bI} = (δ_{I k_b} − x^{from}_b δ_{I p})/z_p."""
    _check_ps(ps_from)
    _check_ps(ps_to)
    if len(ps_from) != len(ps_to):
        raise ValueError(f"ps_to: expected the same {len(ps_from)} points, received {len(ps_to)}.")
    n, N, m = len(ps_to), ps_to.manifold.n_coords, ps_to.dim
    rows = np.arange(n)
    z = ps_to.points
    p = ps_from.patch
    kept = ps_from.kept
    zp = z[rows, p]
    x_from = np.take_along_axis(z, kept, axis=1) / zp[:, None]  # (n, m)
    D = np.zeros((n, m, N), dtype=np.complex128)
    D[rows[:, None], np.arange(m)[None, :], kept] = 1.0
    D[rows, :, p] -= x_from
    D /= zp[:, None, None]
    return np.einsum("xai,xbi->xab", ps_to.jacobian, D)
