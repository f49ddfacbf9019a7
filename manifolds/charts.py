r"""Local charts on a hypersurface: patch, eliminated coordinate, Ω, pullback Jacobian, FS det.

Conventions (../shared/reference/cy-geometry.md):

- patch p = argmax_j |z_j|; points are divided by z_p (so z_p = 1, |z_j| ≤ 1);
- eliminated coordinate e = argmax_{j ≠ p} |∂Q/∂z_j|; Ω = 1/(∂Q/∂z_e);
- local coordinates x_a = the kept coordinates (all but p and e, increasing order);
- pullback Jacobian P_{aI} = ∂z_I/∂x_a: δ on kept coordinates, 0 on z_p, −(∂_a Q)/(∂_e Q) on z_e;
- FS: g_{IJ̄} = (1/π)(δ_{IJ}/|z|² − z̄_I z_J/|z|⁴), pulled back g = P g P†. With r_a = P_{a e} and
  v = P z̄ this is (1/π)[(I + r r†)/s − v v†/s²], s = |z|², whose determinant follows from the matrix
  determinant lemma (rank-2 update of I/s):

  .. math:: \det g = π^{-m} s^{-m} \left[(1 + |r|^2)(1 - |v|^2/s) + |r^\dagger v|^2/s\right].
"""
from __future__ import annotations

import numpy as np

__all__ = ["chart_data", "kept_indices", "build_jacobian", "fs_det_from_chart", "fs_pullback_from_chart"]


def kept_indices(patch: np.ndarray, elim: np.ndarray, N: int) -> np.ndarray:
    """(M, N−2) int: the local-coordinate indices (all but patch and elim, increasing)."""
    M = patch.shape[0]
    mask = np.ones((M, N), dtype=bool)
    rows = np.arange(M)
    mask[rows, patch] = False
    mask[rows, elim] = False
    return np.nonzero(mask)[1].reshape(M, N - 2)


def chart_data(manifold, z: np.ndarray, patch=None, elim=None) -> dict:
    """Normalise z (M, N) into its patch and compute the chart quantities.

    Returns a dict with ``points`` (M, N) complex128 (z_patch = 1 exactly), ``patch``, ``elim`` (M,)
    int64, ``kept`` (M, dim) int64, ``dQ`` (M, N), ``q`` (M,) Q at the normalised points,
    ``omega_sq`` (M,) = 1/|∂_eQ|², ``r`` (M, dim) = −∂_aQ/∂_eQ.
    ``patch``/``elim`` may be forced (int or (M,) arrays); the default is the convention above.
    """
    z = np.asarray(z, dtype=np.complex128)
    M, N = z.shape
    rows = np.arange(M)
    a2 = z.real * z.real + z.imag * z.imag
    if patch is None:
        patch = np.argmax(a2, axis=1)
    else:
        patch = np.broadcast_to(np.asarray(patch, dtype=np.int64), (M,)).copy()
    zp = z[rows, patch]
    pts = z / zp[:, None]
    pts[rows, patch] = 1.0
    q, dq = manifold.Q_and_dQ(pts, xp=np)
    if elim is None:
        d2 = dq.real * dq.real + dq.imag * dq.imag
        d2[rows, patch] = -1.0
        elim = np.argmax(d2, axis=1)
    else:
        elim = np.broadcast_to(np.asarray(elim, dtype=np.int64), (M,)).copy()
        if np.any(elim == patch):
            raise ValueError("elim: must differ from the patch coordinate at every point; received equal indices.")
    dqe = dq[rows, elim]
    kept = kept_indices(patch, elim, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dqe
        r = -np.take_along_axis(dq, kept, axis=1) * inv[:, None]
        omega_sq = inv.real * inv.real + inv.imag * inv.imag
    return {
        "points": pts,
        "patch": patch.astype(np.int64),
        "elim": elim.astype(np.int64),
        "kept": kept,
        "dQ": dq,
        "q": q,
        "omega_sq": omega_sq,
        "r": r,
    }


def build_jacobian(kept: np.ndarray, elim: np.ndarray, r: np.ndarray, N: int, *, block: int = 65536) -> np.ndarray:
    """Pullback Jacobian P (M, dim, N) complex128 from kept indices, elim and r = −∂_aQ/∂_eQ.

    Filled in row blocks (cache-sized scatters are ~7× faster than one scatter over 10⁶ rows)."""
    M, dim = kept.shape
    jac = np.empty((M, dim, N), dtype=np.complex128)
    cols = np.arange(dim)[None, :]
    for s in range(0, M, block):
        blk = jac[s:s + block]
        b = blk.shape[0]
        rows = np.arange(b)[:, None]
        blk[...] = 0.0
        blk[rows, cols, kept[s:s + b]] = 1.0
        blk[rows, cols, elim[s:s + b, None]] = r[s:s + b]
    return jac


def _fs_parts(points, kept, elim, r):
    rows = np.arange(points.shape[0])
    zc = np.conj(points)
    s = np.einsum("ij,ij->i", points.real, points.real) + np.einsum("ij,ij->i", points.imag, points.imag)
    v = np.take_along_axis(zc, kept, axis=1) + r * zc[rows, elim][:, None]  # (M, dim) = P z̄
    return s, v


def fs_det_from_chart(points, kept, elim, r) -> np.ndarray:
    """det of the pulled-back FS metric (M,) float64, by the rank-2 determinant lemma (module doc)."""
    m = kept.shape[1]
    s, v = _fs_parts(points, kept, elim, r)
    rr = np.einsum("ij,ij->i", r.real, r.real) + np.einsum("ij,ij->i", r.imag, r.imag)
    vv = np.einsum("ij,ij->i", v.real, v.real) + np.einsum("ij,ij->i", v.imag, v.imag)
    rv = np.einsum("ij,ij->i", np.conj(r), v)
    rv2 = rv.real * rv.real + rv.imag * rv.imag
    return ((1.0 + rr) * (1.0 - vv / s) + rv2 / s) / (np.pi**m * s**m)


def fs_pullback_from_chart(points, kept, elim, r) -> np.ndarray:
    """Pulled-back FS metric (M, dim, dim) complex128 = (1/π)[(I + r r†)/s − v v†/s²]."""
    m = kept.shape[1]
    s, v = _fs_parts(points, kept, elim, r)
    eye = np.eye(m)
    g = (eye[None] + r[:, :, None] * np.conj(r)[:, None, :]) / s[:, None, None]
    g -= v[:, :, None] * np.conj(v)[:, None, :] / (s * s)[:, None, None]
    return g / np.pi
