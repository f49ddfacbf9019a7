"""Sampled points with their Monte-Carlo weights and chart data; files in ntkflow and cymetric format.

ntkflow format (``np.savez``, no pickles), one row per point:

| key | shape, dtype | meaning |
|---|---|---|
| ``points`` | (n, N) complex128 | homogeneous coordinates divided by the largest one (z_patch = 1) |
| ``weights`` | (n,) float64 | MC weights for |Ω|², mean(weights · det g_FS / omega_sq) = ∫J^dim |
| ``omega_sq`` | (n,) float64 | |Ω|², Ω = 1/(∂Q/∂z_elim) |
| ``patch``, ``elim`` | (n,) int64 | patch coordinate (= 1) and eliminated coordinate |
| ``exponents``, ``coefficients``, ``name``, ``psi`` | — | the manifold (psi = nan when none) |
| ``format``, ``version`` | str, int | ``"ntkflow-points"``, 1 |

cymetric format (``dataset.npz`` as cymetric's ``prepare_dataset`` writes it): ``X_train``/``X_val``
(n, 2N) float64 = [Re z, Im z], ``y_train``/``y_val`` (n, 2) = [weights, |Ω|²], ``val_pullbacks``
(n_val, dim, N) complex128; ntkflow adds the manifold keys above (cymetric ignores extra keys).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import finite_array, positive_int

from .charts import build_jacobian, chart_data, fs_det_from_chart, kept_indices
from .hypersurface import Hypersurface, Manifold

__all__ = ["PointSet", "save_points", "load_points", "pointset_from_points"]

FORMAT_TAG = "ntkflow-points"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class PointSet:
    r"""Points on X with Monte-Carlo weights for the Calabi–Yau measure |Ω|² and chart data.

    For any function f on X, ``mean(weights * f)`` ≈ ∫_X f |Ω|² (in units where
    mean(weights · det g_FS/|Ω|²) = ∫_X J^dim), and ∫_X h d^{2m}x = mean(weights · h/|Ω|²)/m!.

    Fields (all arrays read-only):
      points (n, N) complex128, weights (n,) float64, omega_sq (n,) float64, patch (n,) int64,
      elim (n,) int64, jacobian (n, dim, N) complex128 (P_{aI} = ∂z_I/∂x_a), manifold.
    """

    points: np.ndarray
    weights: np.ndarray
    omega_sq: np.ndarray
    patch: np.ndarray
    elim: np.ndarray
    jacobian: np.ndarray
    manifold: Manifold

    def __post_init__(self):
        if not isinstance(self.manifold, Manifold):
            raise TypeError(f"manifold: expected a Manifold (e.g. preset('fermat-quintic')), received {type(self.manifold).__name__}.")
        N, dim = self.manifold.n_coords, self.manifold.dim
        pts = np.asarray(self.points)
        if pts.ndim != 2 or pts.shape[1] != N:
            raise ValueError(f"points: expected shape (n, {N}), received {pts.shape}.")
        n = pts.shape[0]
        want = {
            "weights": (n,),
            "omega_sq": (n,),
            "patch": (n,),
            "elim": (n,),
            "jacobian": (n, dim, N),
        }
        for key, shape in want.items():
            arr = np.asarray(getattr(self, key))
            if arr.shape != shape:
                raise ValueError(f"{key}: expected shape {shape} to match {n} points, received {arr.shape}.")
        for key, dt in (("points", np.complex128), ("weights", np.float64), ("omega_sq", np.float64),
                        ("patch", np.int64), ("elim", np.int64), ("jacobian", np.complex128)):
            arr = np.asarray(getattr(self, key))
            if arr.dtype != dt:
                arr = arr.astype(dt)
            if arr.flags.writeable:
                arr = arr.view()
                arr.setflags(write=False)
            object.__setattr__(self, key, arr)

    # ---- sizes ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def n(self) -> int:
        return len(self)

    @property
    def dim(self) -> int:
        return self.manifold.dim

    @property
    def kept(self) -> np.ndarray:
        """(n, dim) int64: indices of the local coordinates x_a (all but patch and elim, increasing)."""
        return kept_indices(self.patch, self.elim, self.manifold.n_coords)

    # ---- subsets ----------------------------------------------------------------------------
    def __getitem__(self, idx) -> "PointSet":
        """Subset by slice, integer array or boolean mask (an int gives a one-point set)."""
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if int(idx) != -1 else None)
        return PointSet(
            self.points[idx], self.weights[idx], self.omega_sq[idx], self.patch[idx], self.elim[idx],
            self.jacobian[idx], self.manifold,
        )

    def split(self, n_train: int) -> tuple["PointSet", "PointSet"]:
        """(first n_train points, the rest): train / held-out. Points are i.i.d. across lines."""
        n_train = positive_int("n_train", n_train)
        if n_train >= len(self):
            raise ValueError(f"n_train: must be < the number of points {len(self)} to leave a held-out set, received {n_train}.")
        return self[:n_train], self[n_train:]

    def __repr__(self):
        return f"PointSet(n={len(self)}, manifold={self.manifold.name!r}, dim={self.dim})"


def pointset_from_points(manifold: Hypersurface, points, weights=None, *, patch=None, elim=None) -> PointSet:
    """Build a PointSet from homogeneous points on X (any scaling): charts, |Ω|², Jacobians.

    ``weights`` default to the FS-sampling weights ∫J^dim · |Ω|²/det g_FS (right for points drawn by
    :func:`ntkflow.manifolds.sample`); pass stored weights to keep them. ``patch``/``elim`` force
    a chart (int or (n,) arrays; default: the convention of the reference).
    """
    pts = finite_array("points", points, ndim=2)
    if pts.shape[1] != manifold.n_coords:
        raise ValueError(f"points: expected {manifold.n_coords} coordinates for {manifold.name}, received shape {pts.shape}.")
    cd = chart_data(manifold, pts, patch=patch, elim=elim)
    if weights is None:
        det = fs_det_from_chart(cd["points"], cd["kept"], cd["elim"], cd["r"])
        weights = manifold.intersection_number * cd["omega_sq"] / det
    else:
        weights = finite_array("weights", weights, ndim=1).astype(np.float64)
    jac = build_jacobian(cd["kept"], cd["elim"], cd["r"], manifold.n_coords)
    return PointSet(cd["points"], weights, cd["omega_sq"], cd["patch"], cd["elim"], jac, manifold)


# ---- files ----------------------------------------------------------------------------------


def save_points(path, ps: PointSet, *, format: str = "ntkflow", val_split: float = 0.1) -> str:
    """Write ``ps`` to ``path`` (.npz). ``format``: ``"ntkflow"`` (default) or ``"cymetric"``.

    For cymetric, the first ⌈(1 − val_split)·n⌉ points go to ``X_train``/``y_train`` and the rest to
    ``X_val``/``y_val``/``val_pullbacks`` (cymetric's layout; no shuffling). Returns the path written.
    """
    if not isinstance(ps, PointSet):
        raise TypeError(f"ps: expected a PointSet, received {type(ps).__name__}.")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path = path + ".npz"
    spec = ps.manifold.spec()
    if format == "ntkflow":
        np.savez(
            path, points=ps.points, weights=ps.weights, omega_sq=ps.omega_sq, patch=ps.patch, elim=ps.elim,
            format=np.array(FORMAT_TAG), version=np.array(FORMAT_VERSION), **spec,
        )
    elif format == "cymetric":
        if not (0.0 <= float(val_split) < 1.0):
            raise ValueError(f"val_split: must be in [0, 1), received {val_split!r}.")
        n = len(ps)
        t = n - int(np.floor(float(val_split) * n))
        X = np.concatenate([ps.points.real, ps.points.imag], axis=1)
        y = np.stack([ps.weights, ps.omega_sq], axis=1)
        np.savez(
            path, X_train=X[:t], y_train=y[:t], X_val=X[t:], y_val=y[t:], val_pullbacks=ps.jacobian[t:],
            format=np.array("cymetric+ntkflow-spec"), version=np.array(FORMAT_VERSION), **spec,
        )
    else:
        raise ValueError(f"format: expected 'ntkflow' or 'cymetric', received {format!r}.")
    return path


def load_points(path, manifold: Manifold | None = None, *, check: bool = True) -> PointSet:
    """Read a file written by :func:`save_points` (either format) or a cymetric ``dataset.npz``.

    The manifold is read from the file when present; a plain cymetric file needs ``manifold=``
    (e.g. ``preset('fermat-quintic')``). Jacobians are recomputed (they are not stored). With
    ``check``, points must satisfy |Q(z)| ≤ 1e-8 Σ|c_m z^{e_m}|.
    For cymetric files, train and validation points are concatenated (train first); |Ω|² is
    recomputed in ntkflow's chart (the same rule as cymetric's) while the weights — a chart-independent
    function — are kept as stored.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file {path!r}; write one with `ntkflow sample ... -o FILE.npz`.")
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    stored = Hypersurface.from_spec(data) if "exponents" in data else None
    if manifold is None:
        if stored is None:
            raise ValueError(
                f"manifold: {path!r} carries no manifold spec (a plain cymetric dataset); pass "
                "manifold=preset('fermat-quintic') (or the Hypersurface it was made from)."
            )
        manifold = stored
    N = manifold.n_coords
    if "points" in data:
        pts = data["points"]
        weights = data["weights"]
        patch, elim = data.get("patch"), data.get("elim")
        omega_file = data.get("omega_sq")
    elif "X_train" in data:
        X = np.concatenate([data["X_train"], data.get("X_val", np.zeros((0, 2 * N)))], axis=0)
        y = np.concatenate([data["y_train"], data.get("y_val", np.zeros((0, 2)))], axis=0)
        if X.ndim != 2 or X.shape[1] != 2 * N:
            raise ValueError(f"{path}: X has shape {X.shape}, expected (n, {2 * N}) = [Re z, Im z] for {manifold.name}; wrong manifold?")
        pts = X[:, :N] + 1j * X[:, N:]
        weights = y[:, 0]
        patch = elim = None
        omega_file = None
    else:
        raise ValueError(f"{path}: neither ntkflow ('points') nor cymetric ('X_train') keys; found {sorted(data)}.")
    ps = pointset_from_points(manifold, pts, weights, patch=patch, elim=elim)
    if check:
        res = np.abs(manifold.Q(ps.points)) / manifold.term_scale(ps.points)
        if res.size and float(res.max()) > 1e-8:
            raise ValueError(
                f"{path}: points are not on {manifold.name} (max relative |Q| = {res.max():.2e}); "
                "pass the manifold the file was made for, or check=False."
            )
        if omega_file is not None and len(omega_file):
            rel = np.abs(omega_file - ps.omega_sq) / ps.omega_sq
            if float(rel.max()) > 1e-8:
                raise ValueError(f"{path}: stored omega_sq disagrees with the recomputed |Ω|² (max rel {rel.max():.2e}).")
    return ps
