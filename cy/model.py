"""Learned Kähler metrics on a hypersurface: evaluation, saving and loading.

Every model is a Kähler potential on the ambient projective space restricted to X, so its metric
g = ∂∂̄K pulled back is in the class of the hyperplane (∫J^dim = deg Q).  Points are always used in
the reference patch convention (largest coordinate = 1, eliminated coordinate argmax |∂Q/∂z_j|); plain
arrays are converted with :func:`ntkflow.manifolds.pointset_from_points`.

Kinds
- ``"bergman"``: K = (1/π)[log|z|² + φ], φ = s†Hs/|z|^{2k} (H Hermitian, sparse half pairs);
  the frozen u^k-kernel (infinite-width) function space, trained by Gauss–Newton.
- ``"donaldson"``: K = (1/(kπ)) log(s†Gs) (G Hermitian positive), Donaldson's algebraic metrics.
- ``"network"``: K = (1/π)[log|z|² + φ_θ] with φ_θ a finite MLP on z z̄ᵀ/|z|² (see network.py).
- ``"dual-kernel"``: K = (1/π)[log|z|² + φ], φ = Σ_b α_b k(z, c_b) over stored centres (see dual.py).
- ``"cicy-sections"``: a complete intersection in P^{n_1} × … × P^{n_m} (:class:`CICYSectionModel`): the
  multi-degree sections s of :class:`ntkflow.cy.algebra.Factors`, H Hermitian over them, and the identity link
  K = (1/π)[Σ_a (k_a/k) log|z^{(a)}|² + sᵀHs̄ Π_a|z^{(a)}|^{-2k_a}] or the log link K = (1/(kπ)) log sᵀHs̄.

Each model class registers its kind with ``@register("kind")``; :func:`load` is a lookup in that
registry (importing :mod:`ntkflow.cy` registers every built-in kind).
Files: ``model.json`` (kind, manifold, scalars) + ``model.npz`` (arrays), no pickles.
"""
from __future__ import annotations

import functools

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import positive_int
from ntkflow.cy import algebra
from ntkflow.cy.basis import PairBasis
from ntkflow.cy.curvature import bergman_gfun, donaldson_gfun
from ntkflow.io import NtkflowFileError, atomic_json, atomic_savez, read_json, read_npz, sha256_file
from ntkflow.manifolds import Hypersurface, PointSet, check_on_manifold, monomial_sections, monomials, pointset_from_points
from ntkflow.manifolds.cicy import CICYPointSet, CompleteIntersection, cicy_pointset_from_points
from ntkflow.manifolds.cicy_jets import embedding_derivatives, jet_grams, make_jet_curvature, section_jets, taylor_vectors

__all__ = ["Model", "BergmanModel", "DonaldsonModel", "CICYSectionModel", "register", "MODELS", "load", "as_pointset", "MODEL_FORMAT",
           "check_pair_arrays"]

MODEL_FORMAT = "ntkflow-model"
MODEL_VERSION = 2  # 2: model.json holds npz_sha256, the hash of model.npz (version 1 files load unchecked)


def as_pointset(manifold, points):
    """PointSet from a PointSet or an (n, N) array of points on ``manifold``, refused (ValueError) unless
    every point lies on it: |Q(z)| ≤ ON_MANIFOLD_RTOL (1e-8) · Σ|c_m z^{e_m}| and z ≠ 0
    (:func:`ntkflow.manifolds.check_on_manifold`) — points of another manifold or another member of the
    family would otherwise give a silently wrong metric. On a :class:`CompleteIntersection` the same for a
    :class:`~ntkflow.manifolds.cicy.CICYPointSet` (|Q_j| ≤ 1e-8 Σ_m |c_jm z^{e_jm}| for every equation)."""
    if isinstance(manifold, CompleteIntersection):
        return _as_cicy_pointset(manifold, points)
    if isinstance(points, PointSet):
        if points.manifold.n_coords != manifold.n_coords:
            raise ValueError(f"points: a PointSet of {points.manifold.name} does not match the model's manifold {manifold.name}.")
        check_on_manifold(manifold, points.points, name="points")
        return points
    arr = np.asarray(points)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != manifold.n_coords:
        raise ValueError(f"points: expected an array (n, {manifold.n_coords}) or a PointSet, received shape {arr.shape}.")
    check_on_manifold(manifold, arr, name="points")
    return pointset_from_points(manifold, arr)


def _as_cicy_pointset(manifold: CompleteIntersection, points) -> CICYPointSet:
    if isinstance(points, CICYPointSet):
        if points.manifold.n_coords != manifold.n_coords or points.manifold.ambient != manifold.ambient:
            raise ValueError(f"points: a CICYPointSet of {points.manifold.name} does not match the model's manifold "
                             f"{manifold.name}.")
        arr = points.points
    else:
        arr = np.asarray(points)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != manifold.n_coords:
            raise ValueError(f"points: expected an array (n, {manifold.n_coords}) or a CICYPointSet, received shape "
                             f"{arr.shape}.")
    zn, _ = manifold.normalise(arr)
    res = np.max(np.abs(manifold.Q(zn)) / manifold.term_scale(zn), axis=1)
    if not np.all(res <= 1e-8):
        i = int(np.argmax(res))
        raise ValueError(f"points: {int(np.sum(~(res <= 1e-8)))} of {len(arr)} points are not on {manifold.name} "
                         f"(largest relative |Q| = {res[i]:.2e} at row {i}); points of another manifold or member?")
    return points if isinstance(points, CICYPointSet) else cicy_pointset_from_points(manifold, arr)


def _basis_jax(b):
    """(exponents, α, β, weights, k) of a PairBasis as JAX arrays, for the metric_jax closures."""
    import jax.numpy as jnp

    return jnp.asarray(b.exponents), jnp.asarray(b.alpha), jnp.asarray(b.beta), jnp.asarray(b.weight), b.k


#: kind -> model class; filled by :func:`register`
MODELS: dict = {}


def pair_basis_payload(b: PairBasis) -> tuple[dict, dict]:
    """The (json meta, npz arrays) of a one-function pair basis (a Bergman or Donaldson model's file)."""
    return ({"k": int(b.k), "description": b.description},
            {"exponents": b.exponents, "alpha": b.alpha, "beta": b.beta, "weight": b.weight})


def pair_basis_from_payload(meta: dict, arrays: dict, label: str) -> PairBasis:
    """The one-function pair basis written by :func:`pair_basis_payload` (``label`` names the function)."""
    n = len(arrays["alpha"])
    return PairBasis(k=int(meta["k"]), exponents=arrays["exponents"], alpha=arrays["alpha"], beta=arrays["beta"],
                     weight=arrays["weight"], func=np.zeros(n, dtype=np.int64), n_functions=1, labels=(label,),
                     description=meta.get("description", ""))


def register(kind: str):
    """Class decorator: ``@register("bergman")`` makes ``load`` read model files of that kind with the class
    (its ``_from_payload``) and sets ``cls.kind``."""
    def deco(cls):
        if kind in MODELS and MODELS[kind] is not cls:
            raise ValueError(f"kind: {kind!r} is registered already by {MODELS[kind].__name__}; pick another name.")
        cls.kind = kind
        MODELS[kind] = cls
        return cls

    return deco


class Model:
    """Shared evaluation: subclasses provide ``_metric_ps(ps)``, ``metric_jax``, ``_potential_z``,
    ``_payload`` and ``_from_payload``, and are registered with :func:`register`."""

    kind = ""

    def metric(self, points) -> np.ndarray:
        """(n, d, d) complex128 pulled-back metric g_{ab̄} in each point's reference chart."""
        return self._metric_ps(as_pointset(self.manifold, points))

    def det(self, points) -> np.ndarray:
        g = self.metric(points)
        return np.real(np.linalg.det(g))

    def eta(self, points) -> np.ndarray:
        """η = det g / |Ω|² (n,): constant (= κ) for the Ricci-flat metric."""
        ps = as_pointset(self.manifold, points)
        return np.real(np.linalg.det(self._metric_ps(ps))) / ps.omega_sq

    def potential(self, points) -> np.ndarray:
        """Kähler potential K (n,) at the patch-normalised representatives."""
        ps = as_pointset(self.manifold, points)
        return self._potential_z(ps.points)

    def save(self, directory) -> str:
        os.makedirs(directory, exist_ok=True)
        meta, arrays = self._payload()
        meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "kind": self.kind, **meta}
        spec = self.manifold.spec()
        arrays = {**arrays, **{f"manifold_{k}": v for k, v in spec.items()}}
        json.dumps(meta)  # fails before anything is written
        # one unit: model.npz, then model.json naming the npz's SHA-256 (each written atomically); a crash
        # between the two leaves a json whose hash does not match, which load() refuses
        npath = atomic_savez(os.path.join(directory, "model.npz"), **arrays)
        atomic_json(os.path.join(directory, "model.json"), {**meta, "npz_sha256": sha256_file(npath)}, indent=2)
        return os.fspath(directory)


@register("bergman")
@dataclass(frozen=True, eq=False)
class BergmanModel(Model):
    """K = (1/π)[log|z|² + φ], φ = Σ_{pairs} 2Re(ω_p s_α s̄_β)/|z|^{2k} (one combined function).

    basis: a one-function :class:`PairBasis` (``PairBasis.combined``); log_kappa: the fitted constant
    c₀ with det g ≈ e^{c₀}|Ω|²."""

    manifold: object
    basis: PairBasis = field(repr=False)
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.basis.n_functions != 1:
            raise ValueError(f"basis: expected a combined one-function basis, received {self.basis.n_functions} functions; use PairBasis.combined(coeffs).")

    @property
    def k(self) -> int:
        return self.basis.k

    def _metric_ps(self, ps):
        hess = algebra.pair_hessians(self.basis, ps.points, ps.jacobian)[:, 0, :]
        g0 = algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian))
        return algebra.unpack(g0 + hess, ps.dim)

    def phi(self, points) -> np.ndarray:
        ps = as_pointset(self.manifold, points)
        _, vals = algebra.pair_hessians(self.basis, ps.points, ps.jacobian, values=True)
        return vals[:, 0]

    def _potential_z(self, z):
        ps = as_pointset(self.manifold, z)
        h = np.sum(np.abs(ps.points) ** 2, axis=-1)
        return (np.log(h) + self.phi(ps)) / np.pi

    def metric_jax(self):
        """JAX function (z (N,), P (m, N), Ω) → g (m, m) for ntkflow.manifolds.curvature."""
        import jax.numpy as jnp

        exps, al, be, w, k = _basis_jax(self.basis)

        def g_fn(z, P, omega):
            s, gs = monomial_sections(z, exps, xp=jnp)
            h = jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2)
            zb = jnp.conj(z)
            x = (gs - k * s[:, None] * zb[None, :] / h) @ P.T  # (N_k, m)
            t = (x[al] * w[:, None]).T @ jnp.conj(x[be])  # Σ ω X_α X_β†
            f = 2.0 * jnp.real(jnp.sum(w * s[al] * jnp.conj(s[be])))
            pz = P @ zb
            gfs = (P @ jnp.conj(P).T / h - jnp.outer(pz, jnp.conj(pz)) / h ** 2) / jnp.pi
            return gfs + ((t + jnp.conj(t).T) / jnp.pi - k * f * gfs) / h ** k

        return g_fn

    def gfun(self):
        """Holomorphic extension of the metric (for :mod:`ntkflow.cy.curvature`)."""
        return bergman_gfun(self.basis)

    def _payload(self):
        meta, arrays = pair_basis_payload(self.basis)
        return {**meta, "log_kappa": float(self.log_kappa), "info": self.info}, arrays

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        return cls(manifold=manifold, basis=pair_basis_from_payload(meta, arrays, "phi"),
                   log_kappa=float(meta.get("log_kappa", 0.0)), info=meta.get("info", {}))


@register("donaldson")
@dataclass(frozen=True, eq=False)
class DonaldsonModel(Model):
    """K = (1/(kπ)) log(s†Gs), G = Σ half pairs ω_p (E_αβ + h.c.) Hermitian positive definite."""

    manifold: object
    basis: PairBasis = field(repr=False)
    info: dict = field(default_factory=dict, repr=False)

    @property
    def k(self) -> int:
        return self.basis.k

    def _parts(self, z, jac):
        """F = s†Gs (n,), ∂F (n, m), ∂∂̄F (n, m, m) pulled back (no |z| shift)."""
        b = self.basis
        n = len(z)
        dim = jac.shape[1]
        out_f = np.empty(n)
        out_d = np.empty((n, dim), dtype=np.complex128)
        out_h = np.empty((n, dim, dim), dtype=np.complex128)
        for lo in range(0, n, 512):
            hi = min(n, lo + 512)
            s, x, _ = algebra.section_features(z[lo:hi], jac[lo:hi], b.exponents, shift=False)
            w = b.weight
            sa, sb = s[:, b.alpha], s[:, b.beta]
            out_f[lo:hi] = 2.0 * np.real(np.sum(w * sa * np.conj(sb), axis=1))
            # ∂_a F = Σ_{αβ} G_αβ X_aα s̄_β  (both orderings of each half pair)
            out_d[lo:hi] = (np.einsum("cpd,p,cp->cd", x[:, b.alpha], w, np.conj(sb))
                            + np.einsum("cpd,p,cp->cd", x[:, b.beta], np.conj(w), np.conj(sa)))
            t = np.einsum("cpd,p,cpe->cde", x[:, b.alpha], w, np.conj(x[:, b.beta]))
            out_h[lo:hi] = t + np.conj(np.swapaxes(t, -1, -2))
        return out_f, out_d, out_h

    def _metric_ps(self, ps):
        f, d, h = self._parts(ps.points, ps.jacobian)
        g = h / f[:, None, None] - d[:, :, None] * np.conj(d)[:, None, :] / f[:, None, None] ** 2
        return g / (self.k * np.pi)

    def _potential_z(self, z):
        ps = as_pointset(self.manifold, z)
        f, _, _ = self._parts(ps.points, ps.jacobian)
        return np.log(f) / (self.k * np.pi)

    def metric_jax(self):
        import jax.numpy as jnp

        exps, al, be, w, k = _basis_jax(self.basis)

        def g_fn(z, P, omega):
            s, gs = monomial_sections(z, exps, xp=jnp)
            x = gs @ P.T  # (N_k, m)
            f = 2.0 * jnp.real(jnp.sum(w * s[al] * jnp.conj(s[be])))
            d = (x[al] * (w * jnp.conj(s[be]))[:, None]).sum(0) + (x[be] * (jnp.conj(w) * jnp.conj(s[al]))[:, None]).sum(0)
            t = (x[al] * w[:, None]).T @ jnp.conj(x[be])
            hh = t + jnp.conj(t).T
            return (hh / f - jnp.outer(d, jnp.conj(d)) / f ** 2) / (k * jnp.pi)

        return g_fn

    def gfun(self):
        return donaldson_gfun(self.basis)

    def _payload(self):
        meta, arrays = pair_basis_payload(self.basis)
        return {**meta, "info": self.info}, arrays

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        return cls(manifold=manifold, basis=pair_basis_from_payload(meta, arrays, "G"), info=meta.get("info", {}))


@functools.lru_cache(maxsize=16)
def _jet_curvature_runner(dim: int, link: str, k: int, degrees: tuple, chunk: int):
    """The compiled jet curvature (``make_jet_curvature``) of a section model's potential as a function of the Gram
    values v = [sᵀHs̄, |z^(1)|², …]: log link Φ = log(v_0)/(kπ); identity link Φ = (ψ/k + v_0 e^{−ψ})/π with
    ψ = Σ_a d_a log v_a. Cached: the potential depends only on these arguments, not on H."""
    import jax.numpy as jnp

    if link == "log":
        def potential(v):
            return jnp.log(v[0]) / (k * jnp.pi)
    else:
        def potential(v):
            psi = sum(ka * jnp.log(x) for ka, x in zip(degrees, v[1:]))
            return (psi / k + v[0] * jnp.exp(-psi)) / jnp.pi
    return make_jet_curvature(dim, potential, batch=chunk)


@register("cicy-sections")
@dataclass(frozen=True, eq=False)
class CICYSectionModel(Model):
    r"""A Kähler potential from the multi-degree sections s of ``factors`` on a complete intersection.

    identity link: K = (1/π)[Σ_a (k_a/k) log|z^{(a)}|² + sᵀHs̄ Π_a |z^{(a)}|^{−2k_a}],
    log link:      K = (1/(kπ)) log sᵀHs̄;
    H (N_k, N_k) Hermitian over the sections ``factors.exponents()`` (monomial basis); ``log_kappa`` the fitted
    constant c with det g ≈ e^c |Ω|² (identity link). The metric in closed form (``algebra.section_features``
    with the per-factor shift) is the one :class:`ntkflow.cy.matrixfree.PrimalProblem` fits; the tests compare
    it with autodiff of :meth:`potential_jax` (``cicy_metric_jax``)."""

    manifold: CompleteIntersection
    factors: algebra.Factors
    k: int
    H: np.ndarray = field(repr=False)
    link: str = "log"
    log_kappa: float = 0.0
    info: dict = field(default_factory=dict, repr=False)
    _sparse: object = field(init=False, default=None, repr=False, compare=False)

    #: H is used as a sparse matrix when at most this fraction of its entries are non-zero (a symmetric model's H
    #: has non-zeros only on its invariant pairs: bicubic k = 9, 70 608 of 9.2·10⁶)
    SPARSE_DENSITY = 0.05

    def __post_init__(self):
        if not isinstance(self.manifold, CompleteIntersection):
            raise TypeError(f"manifold: expected a CompleteIntersection, received {type(self.manifold).__name__}.")
        if not isinstance(self.factors, algebra.Factors) or self.factors.sizes != tuple(n + 1 for n in self.manifold.ambient):
            raise ValueError(f"factors: expected Factors with sizes {tuple(n + 1 for n in self.manifold.ambient)} (the "
                             f"ambient of {self.manifold.name}), received {self.factors!r}.")
        if self.link not in ("identity", "log"):
            raise ValueError(f"link: expected 'identity' or 'log', received {self.link!r}.")
        nk = len(self.factors.exponents())
        H = np.asarray(self.H, dtype=np.complex128)
        if H.shape != (nk, nk) or not np.allclose(H, H.conj().T, rtol=0, atol=1e-12 * max(1.0, float(np.abs(H).max()))):
            raise ValueError(f"H: expected a Hermitian ({nk}, {nk}) matrix over the sections of degrees "
                             f"{self.factors.degrees}, received shape {H.shape}.")
        H = 0.5 * (H + H.conj().T)
        H.setflags(write=False)
        object.__setattr__(self, "H", H)
        object.__setattr__(self, "k", int(self.k))
        if np.count_nonzero(H) <= self.SPARSE_DENSITY * H.size:
            # the products with H cost nnz instead of N_k² per point (bicubic k = 9: 130× fewer; metric 5.6× faster)
            import scipy.sparse

            object.__setattr__(self, "_sparse", scipy.sparse.csc_matrix(H))

    def _times_h(self, a):
        """a @ H for a (..., N_k) (sparse when H is)."""
        if self._sparse is None:
            return a @ self.H
        flat = a.reshape(-1, a.shape[-1])
        return np.asarray((self._sparse.T @ flat.T).T).reshape(a.shape)

    def _metric_ps(self, ps, chunk: int = 2048):
        f, k = self.factors, self.k
        exps = f.exponents()
        deg = np.asarray(f.degrees, dtype=np.float64)
        out = np.empty((len(ps), ps.dim, ps.dim), dtype=np.complex128)
        for lo in range(0, len(ps), chunk):
            z, jac = ps.points[lo:lo + chunk], ps.jacobian[lo:lo + chunk]
            s, x, _ = algebra.section_features(z, jac, exps, layout="nda", factors=f)  # (c, N_k), (c, d, N_k)
            xh = self._times_h(x)  # (c, d, N_k)
            xhx = xh @ np.conj(np.swapaxes(x, 1, 2))  # X H X†
            v = np.real(np.sum(self._times_h(s) * np.conj(s), axis=1))  # sᵀHs̄
            if self.link == "log":
                a = (xh @ np.conj(s)[:, :, None])[:, :, 0]  # X H s̄ (c, d)
                g = (xhx - a[:, :, None] * np.conj(a)[:, None, :] / v[:, None, None]) / (k * np.pi * v[:, None, None])
            else:
                hk = f.weight(z)
                g = f.fs_sum(z, jac, deg / k) + hk[:, None, None] * (xhx / np.pi - v[:, None, None] * f.fs_sum(z, jac, deg))
            out[lo:lo + chunk] = g
        return out

    def curvature(self, ps, *, chunk: int = 512):
        """Metric, Ricci form, Ricci scalar and top Chern density (a :class:`ntkflow.manifolds.Curvature`) of the
        model at the points of ``ps`` (a CICYPointSet of this manifold), from the 2-jets of the sections and of
        the embedding (:mod:`ntkflow.manifolds.cicy_jets`): one product with H per point for a 10 × 10 Gram
        (d = 3), then autodiff of a small polynomial. Equal to autodiff of :meth:`potential_jax` through the
        implicit embedding (``cicy_curvature``; tests) at a fraction of its cost (bicubic k = 9: ms, not
        seconds, a point). Compiled once per (dim, link, k, degrees, chunk) and cached for the process."""
        chunk = positive_int("chunk", chunk)
        f = self.factors
        exps = f.exponents()
        run = _jet_curvature_runner(ps.dim, self.link, self.k, tuple(int(d) for d in f.degrees), chunk)
        parts = []
        for lo in range(0, len(ps), chunk):
            sub = ps[lo:lo + chunk]
            Z1, Z2 = embedding_derivatives(sub)
            s, S1, S2 = section_jets(sub.points, Z1, Z2, exps)
            grams = [jet_grams(taylor_vectors(s, S1, S2), self.H, self._sparse)]
            if self.link == "identity":
                grams += [jet_grams(taylor_vectors(sub.points[:, b], Z1[:, :, b], Z2[:, :, :, b])) for b in f.blocks]
            parts.append(run(grams))
        return type(parts[0])(*[np.concatenate([getattr(p, name) for p in parts])
                                for name in ("g", "det_g", "ricci", "ricci_scalar", "chern_top")])

    def potential_jax(self):
        """Real JAX K(z) of one point's homogeneous coordinates (N,) (for ``cicy_metric_jax``, ``cicy_curvature``)."""
        import jax.numpy as jnp

        exps, Hj, k, f = self.factors.exponents(), jnp.asarray(self.H), self.k, self.factors

        def K(z):
            s = monomials(z, exps, xp=jnp)
            v = jnp.real(s @ Hj @ jnp.conj(s))
            if self.link == "log":
                return jnp.log(v) / (k * jnp.pi)
            logs = [jnp.log(jnp.sum(jnp.real(z[b]) ** 2 + jnp.imag(z[b]) ** 2)) for b in f.blocks]
            psi = sum(ka * lg for ka, lg in zip(f.degrees, logs))
            return (psi / k + v * jnp.exp(-psi)) / jnp.pi

        return K

    def _potential_z(self, z):
        import jax

        K = jax.jit(jax.vmap(self.potential_jax()))
        return np.asarray(K(np.asarray(z, dtype=np.complex128)))

    def metric_jax(self):
        raise NotImplementedError("metric_jax: a CICY model's curvature runs from its potential: "
                                  "ntkflow.manifolds.cicy.cicy_curvature(ps, model.potential_jax()).")

    def _payload(self):
        meta = {"k": self.k, "link": self.link, "sizes": list(self.factors.sizes), "degrees": list(self.factors.degrees),
                "log_kappa": float(self.log_kappa), "info": self.info}
        return meta, {"H": np.asarray(self.H)}

    @classmethod
    def _from_payload(cls, manifold, meta, arrays):
        return cls(manifold=manifold, factors=algebra.Factors(tuple(meta["sizes"]), tuple(meta["degrees"])),
                   k=int(meta["k"]), H=arrays["H"], link=meta.get("link", "log"),
                   log_kappa=float(meta.get("log_kappa", 0.0)), info=meta.get("info", {}))


def load(directory):
    """Load a model saved by ``ntkflow cy`` (any registered kind) from ``directory``."""
    d = os.fspath(directory)
    jpath, npath = os.path.join(d, "model.json"), os.path.join(d, "model.npz")
    if not (os.path.exists(jpath) and os.path.exists(npath)):
        raise FileNotFoundError(
            f"directory: {d!r} holds no model (model.json + model.npz); write one with `ntkflow cy -o {d}`.")
    meta = read_json(jpath, what="model", required=("format", "kind"))
    if meta.get("format") != MODEL_FORMAT:
        raise NtkflowFileError(jpath, f"directory: {jpath} is not an ntkflow model (format {meta.get('format')!r}).")
    if meta.get("version", 1) not in (1, MODEL_VERSION):
        raise NtkflowFileError(jpath, f"model: {jpath} is format version {meta.get('version')!r}; this ntkflow reads "
                                      f"versions 1..{MODEL_VERSION}.")
    kind = meta.get("kind")
    if kind not in MODELS:
        raise ValueError(f"directory: unknown model kind {kind!r} in {jpath}; known: {sorted(MODELS)} "
                         f"(import the module that registers it; ntkflow.cy registers every built-in kind).")
    if meta.get("version", 1) >= 2 and meta.get("npz_sha256") != sha256_file(npath):
        raise NtkflowFileError(npath, f"model: {npath} does not match {jpath} (its SHA-256 differs from the json's "
                                      f"npz_sha256): the two files come from different saves or a save was "
                                      f"interrupted; save the model again (rerun ntkflow cy).")
    cicy = kind in MODELS and issubclass(MODELS[kind], CICYSectionModel)
    required = (("manifold_cicy_exponents", "manifold_cicy_coefficients", "manifold_cicy_equation",
                 "manifold_cicy_ambient", "manifold_cicy_configuration", "manifold_name") if cicy else
                ("manifold_exponents", "manifold_coefficients", "manifold_name"))
    arrays = read_npz(npath, what="model", required=required)
    spec = {k[len("manifold_"):]: v for k, v in arrays.items() if k.startswith("manifold_")}
    try:
        manifold = CompleteIntersection.from_spec(spec) if cicy else Hypersurface.from_spec(spec)
    except (ValueError, TypeError) as exc:
        raise NtkflowFileError(npath, f"model: the manifold stored in {npath} is invalid: {exc}") from None
    for key, v in arrays.items():
        if not key.startswith("manifold_") and v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            raise NtkflowFileError(npath, f"model: {key} in {npath} holds NaN/inf; the model is unusable.")
    if "alpha" in arrays and "exponents" in arrays:
        check_pair_arrays(npath, meta, arrays, manifold.n_coords)
    try:
        return MODELS[kind]._from_payload(manifold, meta, arrays)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise NtkflowFileError(npath, f"model: {npath} + {jpath} do not form a valid {kind!r} model "
                                      f"({type(exc).__name__}: {exc}).") from None


def check_pair_arrays(path, meta, arrays, n_coords: int) -> None:
    """Refuse (NtkflowFileError naming ``path``) pair-basis arrays that do not index their sections:
    exponents (n_sec, N) non-negative integers of degree k; alpha, beta, weight of one length with
    0 ≤ alpha, beta < n_sec; weight finite."""
    e, a, b, w = (np.asarray(arrays[x]) for x in ("exponents", "alpha", "beta", "weight"))
    k = meta.get("k")
    bad = None
    if e.ndim != 2 or e.shape[1] != n_coords or e.dtype.kind not in "iu" or (e.size and e.min() < 0):
        bad = f"exponents has shape {e.shape} dtype {e.dtype}, expected non-negative integers (n_sec, {n_coords})"
    elif isinstance(k, int) and e.size and not np.all(e.sum(axis=1) == k):
        bad = f"exponents rows do not all sum to k = {k}"
    elif not (a.shape == b.shape == w.shape and a.ndim == 1):
        bad = f"alpha {a.shape}, beta {b.shape}, weight {w.shape} must be equal 1-d shapes"
    elif a.dtype.kind not in "iu" or b.dtype.kind not in "iu":
        bad = f"alpha/beta have dtypes {a.dtype}/{b.dtype}, expected integers"
    elif a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(e)):
        bad = (f"alpha/beta index sections in [{min(a.min(), b.min())}, {max(a.max(), b.max())}], "
               f"but there are {len(e)} (expected 0..{len(e) - 1})")
    elif w.dtype.kind not in "iufc" or not np.all(np.isfinite(w)):
        bad = "weight holds NaN/inf or is not numeric"
    if bad:
        raise NtkflowFileError(path, f"model: {path}: {bad}; the file is damaged or was not written by ntkflow.")
