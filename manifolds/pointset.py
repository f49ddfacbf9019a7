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
from ntkflow.io import NtkflowFileError, atomic_savez, check_format, file_array, read_npz

from .charts import build_jacobian, chart_data, fs_det_from_chart, kept_indices
from .hypersurface import Hypersurface, Manifold

__all__ = ["PointSet", "save_points", "load_points", "pointset_from_points", "check_on_manifold",
           "ON_MANIFOLD_RTOL"]

FORMAT_TAG = "ntkflow-points"
FORMAT_VERSION = 1

#: points z count as on X = {Q = 0} when |Q(z)| ≤ ON_MANIFOLD_RTOL · Σ_m |c_m z^{e_m}| (sampled points reach ~1e-14)
ON_MANIFOLD_RTOL = 1e-8


def check_on_manifold(manifold: Manifold, points, *, name: str = "points", rtol: float = ON_MANIFOLD_RTOL) -> np.ndarray:
    r"""Return ``points`` (n, N) complex after checking that every row is a point of ``manifold``.

    Refused (ValueError naming ``name``, the first bad row and its residual): a shape other than
    (n, N), NaN/inf, z = 0 (no point of projective space), and points with

    .. math:: |Q(z)| > \text{rtol} \cdot \sum_m |c_m z^{e_m}|

    (a scale-invariant test: both sides are homogeneous of degree N). For a manifold without
    ``term_scale`` the right-hand side is rtol · |z|_∞^deg with deg = N. Points of another member of a
    family (e.g. the Dwork quintic at ψ = 0.5 for a ψ = 0.3 model) fail it with a residual O(|Δψ|).
    """
    z = finite_array(name, points, ndim=2)
    N = manifold.n_coords
    if z.shape[1] != N:
        raise ValueError(f"{name}: expected {N} homogeneous coordinates for {getattr(manifold, 'name', manifold)}, "
                         f"received shape {z.shape}.")
    if not len(z):
        return z
    zmax = np.max(np.abs(z), axis=1)  # (n,)
    zero = np.flatnonzero(zmax == 0)
    if zero.size:
        raise ValueError(f"{name}: row {int(zero[0])} is z = 0, which is no point of projective space "
                         f"({zero.size} such rows); remove it.")
    zn = z / zmax[:, None]
    scale = manifold.term_scale(zn) if hasattr(manifold, "term_scale") else np.ones(len(zn))
    res = np.abs(np.asarray(manifold.Q(zn))) / np.where(scale > 0, scale, 1.0)  # (n,)
    bad = np.flatnonzero(~(res <= rtol))
    if bad.size:
        i = int(bad[np.argmax(res[bad])])
        raise ValueError(
            f"{name}: {bad.size} of {len(z)} points are not on {getattr(manifold, 'name', 'the manifold')} "
            f"(largest relative |Q(z)| = {res[i]:.2e} at row {i}, tolerance {rtol:g}); are they points of "
            f"another manifold or another member of the family (psi)? Sample them on this manifold."
        )
    return z


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
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output: the directory {directory!r} of {path!r} does not exist; create it first.")
    if format == "ntkflow":
        atomic_savez(
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
        atomic_savez(
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
    what = "points"
    data = read_npz(path, what=what, hint="write one with `ntkflow sample ... -o FILE.npz`.")
    if "format" in data and "X_train" not in data:
        check_format(path, data["format"], FORMAT_TAG, what=what, versions=(FORMAT_VERSION,),
                     found_version=data.get("version"))
    if "points" not in data and "X_train" not in data:
        raise NtkflowFileError(path, f"points: {path!r} has neither ntkflow ('points') nor cymetric ('X_train') "
                                     f"arrays; found {sorted(data)}.")
    stored = None
    if "exponents" in data:
        file_array(data, "exponents", path, what=what, ndim=2, kind="iu")
        file_array(data, "coefficients", path, what=what, ndim=1, kind="iufc")
        try:
            stored = Hypersurface.from_spec(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise NtkflowFileError(path, f"points: the manifold stored in {path!r} is invalid: {exc}") from None
    if manifold is None:
        if stored is None:
            raise ValueError(
                f"manifold: {path!r} carries no manifold spec (a plain cymetric dataset); pass "
                "manifold=preset('fermat-quintic') (or the Hypersurface it was made from)."
            )
        manifold = stored
    N = manifold.n_coords
    if "points" in data:
        pts = file_array(data, "points", path, what=what, shape=(None, N), kind="fc")
        n = len(pts)
        weights = file_array(data, "weights", path, what=what, shape=(n,), kind="f")
        patch = elim = None
        for key in ("patch", "elim"):
            if key in data:
                a = file_array(data, key, path, what=what, shape=(n,), kind="iu")
                if a.size and (a.min() < 0 or a.max() >= N):
                    raise NtkflowFileError(path, f"points: {key} in {path!r} holds indices in [{a.min()}, {a.max()}], "
                                                 f"expected 0..{N - 1}.")
                patch, elim = (a, elim) if key == "patch" else (patch, a)
        omega_file = file_array(data, "omega_sq", path, what=what, shape=(n,), kind="f") if "omega_sq" in data else None
    elif "X_train" in data:
        Xt = file_array(data, "X_train", path, what=what, ndim=2, kind="f")
        yt = file_array(data, "y_train", path, what=what, shape=(len(Xt), 2), kind="f")
        Xv = file_array(data, "X_val", path, what=what, ndim=2, kind="f") if "X_val" in data else np.zeros((0, 2 * N))
        yv = (file_array(data, "y_val", path, what=what, shape=(len(Xv), 2), kind="f") if "y_val" in data
              else np.zeros((0, 2)))
        for key, a in (("X_train", Xt), ("X_val", Xv)):
            if a.shape[1] != 2 * N:
                raise NtkflowFileError(path, f"points: {key} in {path!r} has shape {a.shape}, expected (n, {2 * N}) = "
                                             f"[Re z, Im z] for {manifold.name}; wrong manifold?")
        X = np.concatenate([Xt, Xv], axis=0)
        y = np.concatenate([yt, yv], axis=0)
        pts = X[:, :N] + 1j * X[:, N:]
        weights = y[:, 0]
        patch = elim = None
        omega_file = None
    else:
        raise NtkflowFileError(path, f"points: {path!r} has neither ntkflow ('points') nor cymetric ('X_train') "
                                     f"arrays; found {sorted(data)}.")
    if weights.size and not np.all(weights > 0):
        raise NtkflowFileError(path, f"points: weights in {path!r} must be > 0 (Monte-Carlo weights); "
                                     f"{int(np.sum(~(weights > 0)))} are not.")
    if check:
        try:
            check_on_manifold(manifold, pts, name=f"points in {path!r}")
        except ValueError as exc:
            raise NtkflowFileError(path, f"{exc} (or pass the manifold the file was made for, or check=False)") from None
    ps = pointset_from_points(manifold, pts, weights, patch=patch, elim=elim)
    if check and omega_file is not None and len(omega_file):
        rel = np.abs(omega_file - ps.omega_sq) / ps.omega_sq
        if float(rel.max()) > 1e-8:
            raise NtkflowFileError(path, f"points: stored omega_sq in {path!r} disagrees with the recomputed |Ω|² "
                                         f"(max rel {rel.max():.2e}); the file was altered or is of another manifold.")
    return ps
