"""Domains of the Riemannian metric flows: flat tori Tⁿ and round spheres Sⁿ (n = 2, 3).

Conventions (issue 11):

- ``Torus(n)``: periodic coordinates θ ∈ [0, 2π)ⁿ; the ambient space *is* the chart (``ambient_dim = n``),
  a metric is a field θ ↦ G(θ), a symmetric positive definite n×n matrix, 2π-periodic in every θ_i.
- ``Sphere(n)``: embedded points x ∈ Sⁿ ⊂ Rⁿ⁺¹ (``ambient_dim = n + 1``); a metric is a field
  x ↦ G(x), a symmetric (n+1)×(n+1) matrix defined on a neighbourhood of Sⁿ in Rⁿ⁺¹ whose restriction
  to the tangent space T_xSⁿ = x^⊥ is the metric. The round sphere of radius r is G = r² I. Normal
  components G(x)x are irrelevant: every intrinsic quantity is computed from the pull-back
  g_ab(y) = ∂_aXᵀ G(X(y)) ∂_bX through a chart X, and (Gx)·∂_aX = 0 cancels them exactly.

Ambient jets of a field at m points: ``G`` (m, A, A), ``dG`` (m, A, A, A) with ``dG[q, a, b, c] = ∂_c G_ab``,
``d2G`` (m, A, A, A, A) with ``d2G[q, a, b, c, d] = ∂_c∂_d G_ab`` (A = ``ambient_dim``). ``chart_jet``
turns them into the jets (g, dg, d2g) of the intrinsic metric in a chart centred at each point, same
index layout with n = ``dim``; all of ``ntkflow.ricci.geometry`` works on such chart jets.

Charts: on Tⁿ the identity (θ itself). On Sⁿ the gnomonic chart centred at p with the orthonormal tangent
frame E = ``frames(p)`` (columns E_a ⊥ p):

    X(y) = (p + E y) / |p + E y| = (p + E y)(1 + |y|²)^(-1/2),

whose derivatives at y = 0 are ∂_aX = E_a, ∂_a∂_bX = −δ_ab p, ∂_a∂_b∂_cX = −(δ_ab E_c + δ_ac E_b + δ_bc E_a).
The chart is orthonormal for the round metric at its centre (g_round(0) = I, ∂g_round(0) = 0), so the
sample weights of ``points`` (round volume) are the Riemannian measure of G = I there, and a tangent
tensor T_ab in the chart is E T Eᵀ in ambient form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import finite_array, positive_int

__all__ = [
    "Torus",
    "Sphere",
    "Domain",
    "FunctionMetric",
    "metric_from_function",
    "round_metric",
    "flat_metric",
    "pushforward",
]


def _grid_counts_message(name: str, n_points: int, valid: list[int], how: str) -> str:
    lower = max([v for v in valid if v <= n_points], default=None)
    upper = min(v for v in valid if v >= n_points)
    near = f"{lower} or {upper}" if lower is not None else f"{upper}"
    return (
        f"n_points: the {name} grid has {how} points, received {n_points}; pass {near} "
        f"(domain.grid_count({n_points}) gives the smallest valid count ≥ n_points), or pass seed=... for "
        f"exactly n_points random points."
    )


def _check_points(domain, points, name: str = "points") -> np.ndarray:
    pts = finite_array(name, points, ndim=2, dtype=np.float64)
    if pts.shape[1] != domain.ambient_dim:
        raise ValueError(
            f"{name}: {domain!r} has ambient dimension {domain.ambient_dim}, received points of shape "
            f"{pts.shape}; pass an (m, {domain.ambient_dim}) array (domain mismatch: "
            f"{'torus coordinates θ' if isinstance(domain, Torus) else 'embedded x ∈ Sⁿ ⊂ Rⁿ⁺¹'})."
        )
    if isinstance(domain, Sphere) and pts.shape[0]:
        dev = float(np.max(np.abs(np.linalg.norm(pts, axis=1) - 1.0)))
        if dev > 1e-8:
            raise ValueError(
                f"{name}: points on {domain!r} must have |x| = 1, received max ||x| − 1| = {dev:.3g}; "
                f"normalise them (x / |x|) or use domain.points(...)."
            )
    return pts


@dataclass(frozen=True)
class Torus:
    """The flat torus Tⁿ = Rⁿ / (2πZ)ⁿ, n ∈ {2, 3}; coordinates θ ∈ [0, 2π)ⁿ, reference metric δ."""

    n: int

    def __post_init__(self):
        if isinstance(self.n, bool) or self.n not in (2, 3):
            raise ValueError(f"Torus: n must be 2 or 3, received {self.n!r}.")

    @property
    def dim(self) -> int:
        return self.n

    @property
    def ambient_dim(self) -> int:
        return self.n

    @property
    def reference_volume(self) -> float:
        """Volume of Tⁿ in the flat reference metric δ: (2π)ⁿ."""
        return (2 * math.pi) ** self.n

    def grid_count(self, n_points: int) -> int:
        """The smallest count kⁿ ≥ n_points of a uniform grid."""
        k = max(1, math.ceil(round(n_points ** (1.0 / self.n), 9)))
        while k**self.n < n_points:
            k += 1
        return k**self.n

    def points(self, n_points: int, *, seed: int | None = None, grid: str | bool | None = None):
        """Sample points and quadrature weights.

        seed=None (default): the uniform grid θ = 2π j / k, j ∈ {0..k−1}ⁿ, n_points = kⁿ exactly (the
        trapezoidal rule, exact for trigonometric polynomials of degree < k in each variable).
        seed=int: n_points uniform random points (numpy default_rng(seed)), equal weights.
        Returns points (m, n) float64 and weights (m,) summing to (2π)ⁿ.
        """
        n_points = positive_int("n_points", n_points)
        if seed is not None and grid not in (None, False):
            raise ValueError(f"points: pass either seed (random points) or grid, received seed={seed!r}, grid={grid!r}.")
        if seed is not None:
            rng = np.random.default_rng(seed)
            pts = rng.uniform(0.0, 2 * math.pi, size=(n_points, self.n))
            return pts, np.full(n_points, self.reference_volume / n_points)
        if grid not in (None, True, "uniform"):
            raise ValueError(f"grid: Torus supports grid='uniform' (or True/None), received {grid!r}.")
        k = round(n_points ** (1.0 / self.n))
        if k**self.n != n_points:
            valid = [j**self.n for j in range(1, k + 3)]
            raise ValueError(_grid_counts_message("uniform", n_points, valid, f"kⁿ (n = {self.n})"))
        axis = 2 * math.pi * np.arange(k) / k
        mesh = np.meshgrid(*([axis] * self.n), indexing="ij")
        pts = np.stack([a.ravel() for a in mesh], axis=1)  # (kⁿ, n)
        return pts, np.full(pts.shape[0], self.reference_volume / pts.shape[0])

    def frames(self, points) -> np.ndarray:
        """Tangent frames (m, n, n): the identity at every point."""
        pts = _check_points(self, points)
        return np.broadcast_to(np.eye(self.n), (pts.shape[0], self.n, self.n)).copy()

    def chart_jet(self, G, dG, d2G, points=None):
        """Chart jets of the metric: on Tⁿ the chart is θ itself, so (g, dg, d2g) = (G, dG, d2G)."""
        _check_jets(self, G, dG, d2G)
        return G, dG, d2G

    def chart_jet_scalar(self, f, df, d2f, points=None):
        """Chart jets (f, ∂_a f, ∂_a∂_b f) of a scalar field from its ambient jets (identity on Tⁿ)."""
        return f, df, d2f


@dataclass(frozen=True)
class Sphere:
    """The unit sphere Sⁿ ⊂ Rⁿ⁺¹, n ∈ {2, 3}; reference metric the round one (G = I), volume |Sⁿ|."""

    n: int

    def __post_init__(self):
        if isinstance(self.n, bool) or self.n not in (2, 3):
            raise ValueError(f"Sphere: n must be 2 or 3, received {self.n!r}.")

    @property
    def dim(self) -> int:
        return self.n

    @property
    def ambient_dim(self) -> int:
        return self.n + 1

    @property
    def reference_volume(self) -> float:
        """Round volume of the unit Sⁿ: 4π (n = 2), 2π² (n = 3)."""
        return 4 * math.pi if self.n == 2 else 2 * math.pi**2

    def _gauss_k(self, n_points: int) -> int | None:
        per = 2 if self.n == 2 else 4
        k = round((n_points / per) ** (1.0 / self.n))
        return k if k >= 1 and per * k**self.n == n_points else None

    def grid_count(self, n_points: int, grid: str = "gauss") -> int:
        """Smallest valid count ≥ n_points of the grid rule ('gauss': 2k² on S², 4k³ on S³; 'fibonacci': any)."""
        if grid == "fibonacci":
            return int(n_points)
        per = 2 if self.n == 2 else 4
        k = 1
        while per * k**self.n < n_points:
            k += 1
        return per * k**self.n

    def points(self, n_points: int, *, seed: int | None = None, grid: str | bool | None = None):
        """Sample points x ∈ Sⁿ and quadrature weights (m,) summing to |Sⁿ| (round measure).

        seed=None, grid='gauss' (default): a product Gauss rule, exact for every polynomial in x of degree
        ≤ 2k − 1 —
          S²: x = (√(1−u²) cos φ, √(1−u²) sin φ, u), Gauss–Legendre in u (k nodes) × 2k equispaced φ;
              dA = du dφ; n_points = 2k².
          S³: Hopf coordinates x = (√(1−t) e^{iξ₁}, √t e^{iξ₂}), dV = ½ dt dξ₁ dξ₂, Gauss–Legendre in
              t ∈ [0, 1] (k nodes) × 2k × 2k equispaced ξ₁, ξ₂; n_points = 4k³.
        grid='fibonacci' (S² only): the Fibonacci lattice, exactly n_points quasi-uniform points, equal weights.
        seed=int: n_points uniform random points (Gaussian vectors normalised), equal weights.
        """
        n_points = positive_int("n_points", n_points)
        if seed is not None and grid not in (None, False):
            raise ValueError(f"points: pass either seed (random points) or grid, received seed={seed!r}, grid={grid!r}.")
        vol = self.reference_volume
        if seed is not None:
            rng = np.random.default_rng(seed)
            z = rng.standard_normal((n_points, self.n + 1))
            return z / np.linalg.norm(z, axis=1, keepdims=True), np.full(n_points, vol / n_points)
        grid = "gauss" if grid in (None, True) else grid
        if grid == "fibonacci":
            if self.n != 2:
                raise ValueError(f"grid: 'fibonacci' exists on S² only, received it for {self!r}; use grid='gauss' or seed=.")
            i = np.arange(n_points) + 0.5
            u = 1.0 - 2.0 * i / n_points
            phi = math.pi * (1.0 + math.sqrt(5.0)) * i
            s = np.sqrt(1.0 - u**2)
            pts = np.stack([s * np.cos(phi), s * np.sin(phi), u], axis=1)
            return pts, np.full(n_points, vol / n_points)
        if grid != "gauss":
            raise ValueError(f"grid: Sphere supports 'gauss' or 'fibonacci' (S²), received {grid!r}.")
        k = self._gauss_k(n_points)
        if k is None:
            per = 2 if self.n == 2 else 4
            valid = [per * j**self.n for j in range(1, int((n_points / per) ** (1 / self.n)) + 3)]
            raise ValueError(_grid_counts_message("gauss", n_points, valid, f"{per}k^{self.n}"))
        nodes, w = np.polynomial.legendre.leggauss(k)  # on [−1, 1]
        ang = 2 * math.pi * np.arange(2 * k) / (2 * k)
        if self.n == 2:
            u, phi = np.meshgrid(nodes, ang, indexing="ij")
            wu = np.broadcast_to(w[:, None], u.shape)
            s = np.sqrt(1.0 - u**2)
            pts = np.stack([s * np.cos(phi), s * np.sin(phi), u], axis=-1).reshape(-1, 3)
            weights = (wu * (2 * math.pi / (2 * k))).ravel()
        else:
            t_nodes, t_w = 0.5 * (nodes + 1.0), 0.5 * w  # Gauss–Legendre on [0, 1]
            t, x1, x2 = np.meshgrid(t_nodes, ang, ang, indexing="ij")
            wt = np.broadcast_to(t_w[:, None, None], t.shape)
            a, b = np.sqrt(1.0 - t), np.sqrt(t)
            pts = np.stack([a * np.cos(x1), a * np.sin(x1), b * np.cos(x2), b * np.sin(x2)], axis=-1).reshape(-1, 4)
            weights = (0.5 * wt * (2 * math.pi / (2 * k)) ** 2).ravel()
        return pts, weights

    def frames(self, points) -> np.ndarray:
        """Orthonormal tangent frames E (m, n+1, n): columns ⊥ x, from the Householder reflection
        H = I − 2vvᵀ/vᵀv, v = x + s e_{n+1}, s = sign(x_{n+1}) (H e_{n+1} = −s x); E = first n columns of H."""
        pts = _check_points(self, points)
        A = self.n + 1
        s = np.where(pts[:, -1] >= 0, 1.0, -1.0)
        v = pts.copy()
        v[:, -1] += s
        H = np.eye(A)[None] - 2.0 * v[:, :, None] * v[:, None, :] / np.sum(v * v, axis=1)[:, None, None]
        return H[:, :, : self.n]  # (m, A, n)

    def chart_derivatives(self, points):
        """Derivatives at y = 0 of the gnomonic chart X(y) = (p + Ey)/|p + Ey|:
        X1 (m, A, n) = E, X2 (m, A, n, n) = −δ_ab p, X3 (m, A, n, n, n) = −(δ_ab E_c + δ_ac E_b + δ_bc E_a)."""
        pts = _check_points(self, points)
        E = self.frames(pts)
        I = np.eye(self.n)
        X2 = -pts[:, :, None, None] * I[None, None]
        X3 = -(
            np.einsum("ab,qic->qiabc", I, E) + np.einsum("ac,qib->qiabc", I, E) + np.einsum("bc,qia->qiabc", I, E)
        )
        return E, X2, X3

    def chart_jet(self, G, dG, d2G, points):
        """Jets (g, dg, d2g) of g_ab(y) = ∂_aXᵀ G(X(y)) ∂_bX at y = 0 in the gnomonic chart at each point.

        With X1 = ∂X, X2 = ∂²X, X3 = ∂³X at 0, Gc = ∂_c[G∘X] = dG_k X1^k_c and
        Gcd = ∂_c∂_d[G∘X] = d2G_kl X1^k_c X1^l_d + dG_k X2^k_cd:
          g_ab     = X1_aᵀ G X1_b
          ∂_c g_ab = X2_acᵀ G X1_b + X1_aᵀ G X2_bc + X1_aᵀ Gc X1_b
          ∂_c∂_d g_ab = X3_acdᵀ G X1_b + X1_aᵀ G X3_bcd + X2_acᵀ G X2_bd + X2_adᵀ G X2_bc
                      + X2_acᵀ Gd X1_b + X1_aᵀ Gd X2_bc + X2_adᵀ Gc X1_b + X1_aᵀ Gc X2_bd + X1_aᵀ Gcd X1_b.
        G (m, A, A), dG (m, A, A, A), d2G (m, A, A, A, A) → g (m, n, n), dg (m, n, n, n), d2g (m, n, n, n, n).
        """
        _check_jets(self, G, dG, d2G)
        X1, X2, X3 = (jnp.asarray(a) for a in self.chart_derivatives(points))
        G, dG, d2G = jnp.asarray(G), jnp.asarray(dG), jnp.asarray(d2G)
        if G.shape[0] != X1.shape[0]:
            raise ValueError(f"chart_jet: G has {G.shape[0]} points but points has {X1.shape[0]}; pass the points the jets were evaluated at.")
        Gc = jnp.einsum("qijk,qkc->qijc", dG, X1)  # (m, A, A, n)
        Gcd = jnp.einsum("qijkl,qkc,qld->qijcd", d2G, X1, X1) + jnp.einsum("qijk,qkcd->qijcd", dG, X2)
        g = jnp.einsum("qia,qij,qjb->qab", X1, G, X1)
        t = jnp.einsum("qiac,qij,qjb->qabc", X2, G, X1)
        dg = t + jnp.swapaxes(t, 1, 2) + jnp.einsum("qia,qijc,qjb->qabc", X1, Gc, X1)
        t3 = jnp.einsum("qiacd,qij,qjb->qabcd", X3, G, X1)
        t22 = jnp.einsum("qiac,qij,qjbd->qabcd", X2, G, X2)
        t21 = jnp.einsum("qiac,qijd,qjb->qabcd", X2, Gc, X1)  # X2_ac Gd X1_b
        d2g = (
            t3 + jnp.swapaxes(t3, 1, 2)
            + t22 + jnp.swapaxes(t22, 3, 4)
            + t21 + jnp.swapaxes(t21, 3, 4)
            + jnp.swapaxes(t21, 1, 2) + jnp.swapaxes(jnp.swapaxes(t21, 1, 2), 3, 4)
            + jnp.einsum("qia,qijcd,qjb->qabcd", X1, Gcd, X1)
        )
        return g, dg, d2g

    def chart_jet_scalar(self, f, df, d2f, points):
        """Chart jets of a scalar h(y) = F(X(y)) from ambient jets F (m,), dF (m, A), d2F (m, A, A):
        h = F, ∂_a h = dF·E_a, ∂_a∂_b h = E_aᵀ d2F E_b − δ_ab dF·p."""
        X1, X2, _ = (jnp.asarray(a) for a in self.chart_derivatives(points))
        df, d2f = jnp.asarray(df), jnp.asarray(d2f)
        dh = jnp.einsum("qk,qka->qa", df, X1)
        d2h = jnp.einsum("qkl,qka,qlb->qab", d2f, X1, X1) + jnp.einsum("qk,qkab->qab", df, X2)
        return jnp.asarray(f), dh, d2h


Domain = Union[Torus, Sphere]


def _check_domain(domain) -> None:
    if not isinstance(domain, (Torus, Sphere)):
        raise TypeError(f"domain: expected Torus(n) or Sphere(n) from ntkflow.ricci.domains, received {domain!r}.")


def _check_jets(domain, G, dG, d2G) -> None:
    A = domain.ambient_dim
    for name, a, nd in (("G", G, 3), ("dG", dG, 4), ("d2G", d2G, 5)):
        shape = tuple(np.shape(a))
        if len(shape) != nd or any(s != A for s in shape[1:]):
            raise ValueError(
                f"{name}: expected shape (m,{' ' + ', '.join([str(A)] * (nd - 1))}) for {domain!r} "
                f"(ambient dimension {A}), received {shape}."
            )


def pushforward(domain, tangent, points) -> np.ndarray:
    """Ambient form E T Eᵀ (m, A, A) of tangent tensors T (m, n, n) given in the chart frames."""
    E = domain.frames(points)
    return jnp.einsum("qia,qab,qjb->qij", E, jnp.asarray(tangent), E)


@dataclass(frozen=True)
class FunctionMetric:
    """A metric field given by a JAX function: ``fn(x) -> (A, A)`` (θ on Tⁿ, embedded x on Sⁿ).

    ``ambient_jets(points)`` returns (G, dG, d2G) by ``jax.jacfwd`` (exact derivatives), evaluated in chunks
    of ``chunk`` points. Build it with :func:`metric_from_function`, which validates ``fn``.
    """

    domain: Domain
    fn: Callable
    chunk: int = 16384
    _jets: Callable = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        fn = self.fn
        jets = jax.jit(jax.vmap(lambda x: (fn(x), jax.jacfwd(fn)(x), jax.jacfwd(jax.jacfwd(fn))(x))))
        object.__setattr__(self, "_jets", jets)

    def ambient_jets(self, points):
        """(G (m, A, A), dG (m, A, A, A) = ∂_c G_ab, d2G (m, A, A, A, A) = ∂_c∂_d G_ab) at the points."""
        pts = _check_points(self.domain, points)
        outs = [self._jets(jnp.asarray(pts[i : i + self.chunk])) for i in range(0, max(len(pts), 1), self.chunk)]
        return tuple(jnp.concatenate([o[j] for o in outs]) for j in range(3))

    def __call__(self, points):
        """G (m, A, A) at the points."""
        return self.ambient_jets(points)[0]


def metric_from_function(fn: Callable, domain, *, check_points: int = 512, seed: int = 0, tol: float = 1e-10) -> FunctionMetric:
    """Validate a user metric and return it as a field with ``ambient_jets``.

    fn: a JAX-traceable function. On Tⁿ: θ (n,) ↦ symmetric positive definite (n, n), 2π-periodic.
    On Sⁿ: x (n+1,) ↦ symmetric (n+1, n+1) whose restriction Eᵀ G E to T_xSⁿ is positive definite
    (round sphere of radius r: ``lambda x: r**2 * jnp.eye(n + 1)``).
    Checked at ``check_points`` random points (seeded by ``seed``): output shape, finiteness of G and its
    first two derivatives, symmetry (|G − Gᵀ| ≤ tol·|G|), positive definiteness on the tangent space,
    periodicity on Tⁿ.
    """
    _check_domain(domain)
    if not callable(fn):
        raise TypeError(f"fn: expected a JAX function of the {'coordinates θ' if isinstance(domain, Torus) else 'embedded point x'}, received {fn!r}.")
    A, n = domain.ambient_dim, domain.dim
    pts, _ = domain.points(positive_int("check_points", check_points), seed=seed)
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((A,), jnp.float64))
    except Exception as exc:
        raise ValueError(
            f"fn: calling it on one point of shape ({A},) of {domain!r} failed ({type(exc).__name__}: {exc}); "
            f"it must map a single {'θ ∈ [0, 2π)^' + str(n) if isinstance(domain, Torus) else 'x ∈ S^' + str(n) + ' ⊂ R^' + str(A)} "
            f"(shape ({A},)) to a ({A}, {A}) matrix, written with jax.numpy."
        ) from None
    if tuple(out.shape) != (A, A):
        hint = (
            f" (on Sⁿ the metric is the ambient ({A}, {A}) matrix whose restriction to T_xSⁿ is g; the round "
            f"sphere of radius r is r² I)" if isinstance(domain, Sphere) else ""
        )
        raise ValueError(f"fn: must return a ({A}, {A}) matrix for {domain!r}, returned shape {tuple(out.shape)}{hint}; domain mismatch or wrong shape.")
    metric = FunctionMetric(domain, fn)
    G, dG, d2G = (np.asarray(a) for a in metric.ambient_jets(pts))
    for name, a in (("G", G), ("∂G", dG), ("∂²G", d2G)):
        bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        if bad.any():
            q = int(np.argmax(bad))
            raise ValueError(f"fn: {name} is NaN/inf at {int(bad.sum())} of {len(pts)} check points (first at {pts[q].tolist()}); the metric must be smooth and finite on the whole domain.")
    asym = np.max(np.abs(G - np.swapaxes(G, 1, 2)), axis=(1, 2)) / np.maximum(np.max(np.abs(G), axis=(1, 2)), 1e-300)
    if np.max(asym) > tol:
        q = int(np.argmax(asym))
        raise ValueError(f"fn: the matrix is not symmetric (relative |G − Gᵀ| = {asym[q]:.3g} at {pts[q].tolist()}); return a symmetric matrix, e.g. 0.5 * (M + M.T).")
    E = domain.frames(pts)
    gt = np.einsum("qia,qij,qjb->qab", E, G, E)
    ev = np.linalg.eigvalsh(0.5 * (gt + np.swapaxes(gt, 1, 2)))
    if np.min(ev[:, 0]) <= 0:
        q = int(np.argmin(ev[:, 0]))
        where = "" if isinstance(domain, Torus) else " on the tangent space T_xSⁿ"
        raise ValueError(f"fn: the metric is not positive definite{where} (smallest eigenvalue {ev[q, 0]:.3g} at {pts[q].tolist()}); return a positive definite matrix (e.g. M Mᵀ + εI).")
    if isinstance(domain, Torus):
        shifted = np.asarray(metric(np.mod(pts[:16] + 2 * np.pi, 4 * np.pi)))
        dev = float(np.max(np.abs(shifted - G[:16])))
        if dev > 1e-8 * max(1.0, float(np.max(np.abs(G)))):
            raise ValueError(f"fn: on {domain!r} the metric must be 2π-periodic in every θ_i; G(θ + 2π) − G(θ) reaches {dev:.3g}; build it from sin/cos of θ.")
    return metric


def round_metric(domain: Sphere, radius: float = 1.0) -> FunctionMetric:
    """The round sphere of radius r: G = r² I."""
    if not isinstance(domain, Sphere):
        raise TypeError(f"domain: round_metric needs a Sphere, received {domain!r}.")
    A = domain.ambient_dim
    return FunctionMetric(domain, lambda x: radius**2 * jnp.eye(A) + 0.0 * x[0])


def flat_metric(domain: Torus, scale: float = 1.0) -> FunctionMetric:
    """The flat torus metric G = scale² δ."""
    if not isinstance(domain, Torus):
        raise TypeError(f"domain: flat_metric needs a Torus, received {domain!r}.")
    return FunctionMetric(domain, lambda x: scale**2 * jnp.eye(domain.n) + 0.0 * x[0])
