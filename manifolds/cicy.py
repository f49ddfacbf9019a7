r"""Complete intersection Calabi–Yau manifolds (CICYs) in products of projective spaces.

X = {Q_1 = … = Q_K = 0} ⊂ A = P^{n_1} × … × P^{n_m}, Q_j homogeneous of degree q_j^{(r)} in the
coordinates of factor r (the configuration matrix q, shape (m, K)); X is Calabi–Yau when
Σ_j q_j^{(r)} = n_r + 1 for every r, and dim X = Σ_r n_r − K.

Conventions (those of the hypersurface code, one factor at a time):

- points are stored per factor normalised: in each factor r the coordinate of largest modulus is the
  patch coordinate p_r and equals 1;
- Ω by the residue formula: the K eliminated coordinates E (none of them a patch coordinate) are those
  with the largest |det ∂Q/∂z_E|; Ω = 1 / det(∂Q_j/∂z_{E_i}); the local coordinates x_a are the other
  dim coordinates (increasing);
- pullback Jacobian P (dim, N): P_{a,I} = ∂z_I/∂x_a: δ on kept coordinates, 0 on patch coordinates,
  −(B^{-1} A)^T on the eliminated ones (B = ∂Q/∂z_E (K, K), A = ∂Q/∂x (K, dim));
- Kähler class t = (t_1, …, t_m): g_t = Σ_r t_r P_r g^{FS}_r P_r^†, g^{FS}_r = (1/π) ∂∂̄ log|z^{(r)}|²;
- J^α for a multi-index α (|α| = dim) is represented by the density (α!/dim!) D_α with
  det(Σ_r t_r g_r) = Σ_α t^α D_α, so that J_t^dim ↔ det g_t (the hypersurface convention);
- weights: mean(w · det g_t / |Ω|²) = ∫_X J_t^dim = Σ_α (dim!/α!) t^α d_α, with the intersection
  numbers d_α = ∫_A J^α ∧ Π_j (Σ_r q_j^{(r)} J_r).

Sampling (Shiffman–Zelditch for products; Anderson–Gerdes–Gray–Krippendorf–Raghuram–Ruehle 2020,
written from the mathematics, not from their code): for a split k = (k_1, …, k_m) of K with
0 ≤ k_r ≤ n_r, draw in each factor a uniformly random linear P^{k_r} ⊂ P^{n_r} (the span of k_r + 1
i.i.d. complex Gaussian vectors) and solve the K equations on P^{k_1} × … × P^{k_m} (zero-dimensional).
By the Crofton formula the expected current of the random subspace of codimension c_r = n_r − k_r is
Π_r ω_r^{c_r}, so its d_c = ∫_X J^c intersection points are distributed on X with density ∝ J^c.
Every admissible split (d_c > 0) is used once per round and all points are kept, so a point has the
mixture density Σ_c J^c / Σ_c d_c, which is positive everywhere (a single split of a multi-factor
ambient would leave the density zero on a ramification divisor, and the weights of infinite variance).
Hence

.. math:: w = \Big(\sum_c d_c\Big) \frac{|\Omega|^2}{\sum_c (c!/\dim!)\, D_c}.

Systems are solved vectorised: K = 1 — one univariate polynomial per line (values at roots of unity,
FFT, companion eigenvalues); K = 2 — the Sylvester resultant in y, a polynomial of degree d_c in x
(interpolated at roots of unity), companion eigenvalues, y from the common root of both equations, Newton
on (x, y); then every point gets Gauss–Newton (minimal-norm) steps on Q in the full coordinates so that
|Q_j| ≤ 1e-12 Σ_m |c_m z^{e_m}|. A subspace whose solutions come out duplicated or off X (probability ~0,
near-degenerate subspaces) is dropped whole and counted in ``CICYPointSet.rejected_subspaces``.
K ≥ 3 is not implemented (NotImplementedError).

Importance sampling (``frame_maps``): spanning the subspaces by M_r u instead of u gives the subspaces
M_r L₀, so the points are M(M^{-1}X ∩ L₀) and have the Crofton density of the FS forms of the hermitian
metrics h_r = (M_r M_r†)^{-1}, ω^{h_r} = (i/2π)∂∂̄ log(z_r† h_r z_r) — cohomologous to ω_r, so the same d_c
normalise it (:func:`cicy_sampling_density`). Mixtures of such samplers (:func:`sample_cicy_mixture`,
weights from the density of every point under every component, :func:`cicy_mixture_weights`) concentrate
points where an integrand is large while the weights stay exact.
"""
from __future__ import annotations

import itertools
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import finite_array, positive_int
from ntkflow.io import NtkflowFileError, atomic_savez, check_format, file_array, read_npz

from .batching import map_batched
from .curvature import Curvature, chern_einsum, levi_civita
from .geometry import mean_stderr
from .hypersurface import Manifold
from .presets import family_parameter

__all__ = [
    "CompleteIntersection", "CICYPointSet", "cicy_preset", "CICY_PRESETS", "CICY_EULER_CHARACTERISTIC",
    "sample_cicy", "cicy_chart_data", "cicy_pointset_from_points", "cicy_fs_factor_pullbacks",
    "cicy_fs_pullback", "cicy_fs_det", "mixed_coefficients", "intersection_numbers", "kahler_volume",
    "euler_characteristic_topological", "fs_potential_t", "cicy_metric_jax", "cicy_curvature", "make_cicy_curvature_fn",
    "save_cicy_points", "load_cicy_points", "CICY_FORMAT_TAG", "cicy_euler_characteristic",
    "crofton_frame_map", "cicy_sampling_density", "cicy_mixture_weights", "sample_cicy_mixture",
    "cohomology_ring_mul",
]

_RESIDUAL_TOL = 1e-12  # relative |Q_j| accepted after polishing (tests ask for 1e-10)


# ---- polynomial ring of the ambient cohomology -------------------------------------------------


def cohomology_ring_mul(a: dict, b: dict, ambient: tuple) -> dict:
    """Product in H*(P^{n_1}×…×P^{n_m}) = Z[J_1..J_m]/(J_r^{n_r+1}); classes are dicts exponent-tuple → int.

    >>> cohomology_ring_mul({(1, 0): 3}, {(1, 0): 1, (0, 1): 2}, ambient=(1, 1))  # 3J_1·(J_1 + 2J_2) = 6J_1J_2
    {(1, 1): 6}
    """
    out: dict = {}
    for ea, ca in a.items():
        for eb, cb in b.items():
            e = tuple(x + y for x, y in zip(ea, eb))
            if any(ei > nr for ei, nr in zip(e, ambient)):
                continue
            out[e] = out.get(e, 0) + ca * cb
    return {e: c for e, c in out.items() if c != 0}


def _multi_indices(total: int, parts: int):
    """All tuples of ``parts`` non-negative ints summing to ``total`` (lexicographic)."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _multi_indices(total - first, parts - 1):
            yield (first,) + rest


def intersection_numbers(ambient, configuration) -> dict:
    r"""d_α = ∫_X J^α = ∫_A J^α ∧ Π_j (Σ_r q_j^{(r)} J_r) for every α with |α| = dim X (dict α → int).

    Computed in the cohomology ring Z[J_1..J_m]/(J_r^{n_r+1}) of A, where ∫_A Π_r J_r^{n_r} = 1."""
    amb = tuple(int(n) for n in ambient)
    q = np.asarray(configuration, dtype=np.int64)  # (m, K)
    m = len(amb)
    dim = sum(amb) - q.shape[1]
    prod = {(0,) * m: 1}
    for j in range(q.shape[1]):
        lin = {tuple(int(r == s) for s in range(m)): int(q[r, j]) for r in range(m) if q[r, j]}
        prod = cohomology_ring_mul(prod, lin, amb)
    out = {}
    for alpha in _multi_indices(dim, m):
        val = cohomology_ring_mul(prod, {alpha: 1}, amb).get(amb, 0)
        out[alpha] = int(val)
    return out


def kahler_volume(ambient, configuration, t) -> float:
    r"""∫_X J_t^dim = Σ_{|α|=dim} (dim!/α!) t^α d_α for the Kähler class J_t = Σ_r t_r J_r."""
    t = np.asarray(t, dtype=np.float64)
    d = intersection_numbers(ambient, configuration)
    total = 0.0
    for alpha, val in d.items():
        dim = sum(alpha)
        coef = math.factorial(dim) / math.prod(math.factorial(a) for a in alpha)
        total += coef * float(np.prod(t ** np.asarray(alpha))) * val
    return float(total)


def euler_characteristic_topological(ambient, configuration) -> int:
    r"""χ(X) = ∫_X c_dim(TX), c(TX) = Π_r (1 + J_r)^{n_r+1} / Π_j (1 + Σ_r q_j^{(r)} J_r) (adjunction)."""
    amb = tuple(int(n) for n in ambient)
    q = np.asarray(configuration, dtype=np.int64)
    m, K = q.shape
    dim = sum(amb) - K
    one = {(0,) * m: 1}
    c = dict(one)
    for r in range(m):
        lin = {(0,) * m: 1, tuple(int(s == r) for s in range(m)): 1}
        for _ in range(amb[r] + 1):
            c = cohomology_ring_mul(c, lin, amb)
    for j in range(K):
        L = {tuple(int(s == r) for s in range(m)): -int(q[r, j]) for r in range(m) if q[r, j]}
        inv, power = dict(one), dict(one)  # (1 + L)^{-1} = Σ_k (−L)^k, truncated at degree dim
        for _ in range(dim):
            power = cohomology_ring_mul(power, L, amb)
            for e, v in power.items():
                inv[e] = inv.get(e, 0) + v
        c = cohomology_ring_mul(c, inv, amb)
    top = {e: v for e, v in c.items() if sum(e) == dim}
    normal = dict(one)
    for j in range(K):
        lin = {tuple(int(s == r) for s in range(m)): int(q[r, j]) for r in range(m) if q[r, j]}
        normal = cohomology_ring_mul(normal, lin, amb)
    return int(cohomology_ring_mul(top, normal, amb).get(amb, 0))


# ---- the manifold ---------------------------------------------------------------------------


def _poly_tables(e: np.ndarray, c: np.ndarray):
    """Exponents/coefficients of Q and of all ∂Q/∂z_i (stacked as (N·n_mon, N) / (N, n_mon))."""
    n_mon, N = e.shape
    de = np.repeat(e[None], N, axis=0)  # (N, n_mon, N)
    dc = c[None, :] * e.T  # (N, n_mon): coefficient c_m e_{m i}
    i = np.arange(N)
    de[i, :, i] = np.maximum(de[i, :, i] - 1, 0)
    return e, c, de.reshape(N * n_mon, N), dc


def _monomials(xp, z, exps: np.ndarray, max_pow: int):
    """Π_i z_i^{e_{m i}} (..., n_mon) for z (..., N), by a table of repeated products (exact at 0)."""
    pw = [xp.ones_like(z), z]
    for _ in range(2, max_pow + 1):
        pw.append(pw[-1] * z)
    table = xp.stack(pw[: max_pow + 1], axis=-2)  # (..., max_pow+1, N)
    idx = np.broadcast_to(np.arange(z.shape[-1]), exps.shape)
    vals = table[..., exps, idx]  # (..., n_mon, N)
    return xp.prod(vals, axis=-1)


def _prod(vals):
    out = vals[0]
    for v in vals[1:]:
        out = out * v
    return out


@dataclass(frozen=True, eq=False)
class CompleteIntersection(Manifold):
    r"""X = {Q_1 = … = Q_K = 0} ⊂ P^{n_1} × … × P^{n_m}, a Calabi–Yau complete intersection.

    .. math:: Q_j(z) = \sum_m c_{jm} \prod_{I=0}^{N-1} z_I^{e_{jmI}}, \qquad
              \sum_{I \in \text{factor } r} e_{jmI} = q_j^{(r)} \ \forall m, \qquad
              \sum_j q_j^{(r)} = n_r + 1.

    Parameters
    ----------
    ambient : tuple of int (m,)
        Dimensions n_r ≥ 1 of the projective factors; the N = Σ(n_r + 1) homogeneous coordinates are
        ordered factor by factor.
    polynomials : tuple of (exponents (n_mon, N) int, coefficients (n_mon,) complex), one per equation.
    configuration : (m, K) int or None
        The configuration matrix q_j^{(r)}; checked against the multidegrees when given.
    name : str; psi : complex or None (family parameter, metadata only).

    Validated at construction: shapes, integrality, multi-homogeneity of every Q_j, the Calabi–Yau
    condition, dim ≥ 1, duplicate monomials, non-zero equations.
    """

    ambient: tuple
    polynomials: tuple
    configuration: np.ndarray | None = None
    name: str = "cicy"
    psi: complex | None = None
    _plan: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        try:
            amb = tuple(int(n) for n in self.ambient)
        except (TypeError, ValueError):
            raise TypeError(f"ambient: expected a tuple of projective dimensions like (2, 2), received {self.ambient!r}.") from None
        if not amb or any(n < 1 for n in amb) or any(float(n) != float(a) for n, a in zip(amb, self.ambient)):
            raise ValueError(f"ambient: expected positive integers n_r (factors P^n_r), received {self.ambient!r}.")
        N = sum(n + 1 for n in amb)
        polys = tuple(self.polynomials) if isinstance(self.polynomials, (tuple, list)) else None
        if not polys:
            raise ValueError(
                f"polynomials: expected a non-empty sequence of (exponents, coefficients) pairs, received {self.polynomials!r}."
            )
        offsets = np.cumsum([0] + [n + 1 for n in amb])
        blocks = [np.arange(offsets[r], offsets[r + 1]) for r in range(len(amb))]
        clean, degrees = [], []
        for j, pc in enumerate(polys):
            if not isinstance(pc, (tuple, list)) or len(pc) != 2:
                raise TypeError(f"polynomials[{j}]: expected a pair (exponents, coefficients), received {type(pc).__name__}.")
            e = np.asarray(pc[0])
            if e.ndim != 2 or e.shape[1] != N or e.shape[0] == 0:
                raise ValueError(
                    f"polynomials[{j}]: exponents must have shape (n_monomials, {N}) for ambient {amb} "
                    f"(N = Σ(n_r+1) coordinates, factor by factor), received shape {e.shape}."
                )
            if e.dtype.kind not in "iu":
                if e.dtype.kind == "f" and np.all(np.isfinite(e)) and np.all(e == np.round(e)):
                    e = e.astype(np.int64)
                else:
                    raise TypeError(f"polynomials[{j}]: exponents must be integers, received dtype {e.dtype}.")
            e = e.astype(np.int64)
            if np.any(e < 0):
                raise ValueError(f"polynomials[{j}]: exponents must be >= 0, received min {e.min()}.")
            if len({tuple(r) for r in e.tolist()}) != e.shape[0]:
                raise ValueError(f"polynomials[{j}]: duplicate monomials; merge them by adding their coefficients.")
            c = finite_array(f"polynomials[{j}] coefficients", pc[1], ndim=1).astype(np.complex128)
            if c.shape[0] != e.shape[0]:
                raise ValueError(f"polynomials[{j}]: expected {e.shape[0]} coefficients (one per monomial), received {c.shape[0]}.")
            keep = c != 0
            if not np.any(keep):
                raise ValueError(f"polynomials[{j}]: all coefficients are zero; Q_{j} must be a non-zero polynomial.")
            e, c = e[keep], c[keep]
            deg = np.stack([e[:, b].sum(axis=1) for b in blocks], axis=1)  # (n_mon, m)
            if np.any(deg != deg[0]):
                bad = int(np.flatnonzero(np.any(deg != deg[0], axis=1))[0])
                raise ValueError(
                    f"polynomials[{j}]: not multi-homogeneous: monomial 0 has multidegree {deg[0].tolist()} "
                    f"but monomial {bad} has {deg[bad].tolist()} (degrees per factor of {amb}); every monomial "
                    "must have the same degree in each factor."
                )
            e.setflags(write=False)
            c.setflags(write=False)
            clean.append((e, c))
            degrees.append(deg[0])
        q = np.stack(degrees, axis=1).astype(np.int64)  # (m, K)
        if self.configuration is not None:
            given = np.asarray(self.configuration)
            if given.shape != q.shape or np.any(given != q):
                raise ValueError(
                    f"configuration: the polynomials have multidegrees {q.T.tolist()} (configuration matrix "
                    f"{q.tolist()}, rows = factors, columns = equations) but received {given.tolist()}; fix the "
                    "matrix or the exponents."
                )
        cy = q.sum(axis=1)
        if np.any(cy != np.asarray(amb) + 1):
            r = int(np.flatnonzero(cy != np.asarray(amb) + 1)[0])
            raise ValueError(
                f"polynomials: not Calabi–Yau: the degrees in factor {r} (P^{amb[r]}) sum to {int(cy[r])}, "
                f"but c_1(X) = 0 needs Σ_j q_j^({r}) = n_{r} + 1 = {amb[r] + 1}; configuration {q.tolist()}."
            )
        K = q.shape[1]
        if sum(amb) - K < 1:
            raise ValueError(f"polynomials: {K} equations in {amb} leave dimension {sum(amb) - K}; need dim >= 1.")
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name: expected a non-empty string, received {self.name!r}.")
        q.setflags(write=False)
        object.__setattr__(self, "ambient", amb)
        object.__setattr__(self, "polynomials", tuple(clean))
        object.__setattr__(self, "configuration", q)
        object.__setattr__(self, "psi", None if self.psi is None else complex(self.psi))
        tables = [_poly_tables(e, c) for e, c in clean]
        plan = {
            "N": N, "blocks": blocks, "offsets": offsets,
            "tables": tables, "max_pow": int(max(int(e.max()) for e, _ in clean)),
            "factor_of": np.concatenate([np.full(n + 1, r) for r, n in enumerate(amb)]),
            "terms": tuple(tuple((complex(cm), tuple((int(i), int(row[i])) for i in np.flatnonzero(row)))
                                 for row, cm in zip(e, c)) for e, c in clean),
        }
        object.__setattr__(self, "_plan", plan)

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def n_coords(self) -> int:
        """N = Σ_r (n_r + 1) homogeneous coordinates."""
        return int(self._plan["N"])

    @property
    def n_factors(self) -> int:
        """m, the number of projective factors."""
        return len(self.ambient)

    @property
    def n_equations(self) -> int:
        """K, the number of equations."""
        return int(self.configuration.shape[1])

    @property
    def dim(self) -> int:
        """Complex dimension Σ n_r − K."""
        return sum(self.ambient) - self.n_equations

    @property
    def blocks(self) -> tuple:
        """Coordinate indices of each factor: tuple of m int arrays."""
        return tuple(self._plan["blocks"])

    @property
    def intersection_number(self) -> float:
        """∫_X J^dim at t = (1, …, 1)."""
        return kahler_volume(self.ambient, self.configuration, np.ones(self.n_factors))

    def intersection_numbers(self) -> dict:
        """d_α = ∫_X J^α for every |α| = dim (see :func:`intersection_numbers`)."""
        return intersection_numbers(self.ambient, self.configuration)

    def kahler_volume(self, t) -> float:
        """∫_X J_t^dim for the Kähler class t (m,)."""
        return kahler_volume(self.ambient, self.configuration, _check_t(t, self.n_factors))

    # ---- evaluation ---------------------------------------------------------------------------
    def _xp(self, z, xp):
        if xp is not None:
            return xp
        if isinstance(z, np.ndarray) or np.isscalar(z):
            return np
        import jax.numpy as jnp

        return jnp

    def Q(self, z, xp=None):
        """(Q_1, …, Q_K): (..., N) complex → (..., K). NumPy or JAX by input type (or ``xp``)."""
        xp = self._xp(z, xp)
        return self._evaluate(xp.asarray(z), xp, want_q=True, want_dq=False)[0]

    def dQ(self, z, xp=None):
        """∂Q_j/∂z_I: (..., N) complex → (..., K, N)."""
        xp = self._xp(z, xp)
        return self._evaluate(xp.asarray(z), xp, want_q=False, want_dq=True)[1]

    def Q_and_dQ(self, z, xp=None):
        """(Q (..., K), dQ (..., K, N)) sharing one table of powers."""
        xp = self._xp(z, xp)
        return self._evaluate(xp.asarray(z), xp, want_q=True, want_dq=True)

    def _evaluate(self, z, xp, *, want_q: bool, want_dq: bool):
        """Sparse evaluation: each monomial is a product over its non-zero exponents only; integer
        powers by repeated multiplication (exact at 0, JAX-differentiable)."""
        self._check_z(z)
        N = self.n_coords
        pw = [None, z]
        for _ in range(2, self._plan["max_pow"] + 1):
            pw.append(pw[-1] * z)
        cols: dict = {}

        def col(i, k):
            if (i, k) not in cols:
                cols[(i, k)] = pw[k][..., i]
            return cols[(i, k)]

        zero = xp.zeros_like(z[..., 0])
        qs, dqs = [], []
        for terms in self._plan["terms"]:
            q = zero
            dcols = [[] for _ in range(N)]
            for coef, factors in terms:
                vals = [col(i, k) for i, k in factors]
                if want_q:
                    q = q + coef * _prod(vals)
                if want_dq:
                    for a, (i, k) in enumerate(factors):
                        parts = vals[:a] + vals[a + 1:] + ([col(i, k - 1)] if k > 1 else [])
                        dcols[i].append((coef * k) * _prod(parts) if parts else (coef * k) + zero)
            qs.append(q)
            if want_dq:
                dqs.append(xp.stack([sum(c[1:], c[0]) if c else zero for c in dcols], axis=-1))
        return (xp.stack(qs, axis=-1) if want_q else None), (xp.stack(dqs, axis=-2) if want_dq else None)

    def term_scale(self, z):
        """Σ_m |c_{jm} z^{e_{jm}}| (..., K): the scale against which |Q_j(z)| is 'zero' (NumPy)."""
        z = np.abs(np.asarray(z))
        mp = self._plan["max_pow"]
        return np.stack([_monomials(np, z, e, mp) @ np.abs(c) for e, c, _, _ in self._plan["tables"]], axis=-1)

    def _check_z(self, z):
        if z.shape[-1] != self.n_coords:
            raise ValueError(f"z: expected last axis of length N = {self.n_coords} for {self.name}, received shape {tuple(z.shape)}.")

    def normalise(self, z) -> tuple[np.ndarray, np.ndarray]:
        """(points (M, N), patch (M, m)): each factor divided by its largest coordinate (which becomes 1)."""
        z = np.array(z, dtype=np.complex128)
        rows = np.arange(z.shape[0])
        patch = np.empty((z.shape[0], self.n_factors), dtype=np.int64)
        for r, b in enumerate(self.blocks):
            zb = z[:, b]
            p = np.argmax(zb.real ** 2 + zb.imag ** 2, axis=1)
            zp = zb[rows, p]
            zb = zb / zp[:, None]
            zb[rows, p] = 1.0
            z[:, b] = zb
            patch[:, r] = b[0] + p
        return z, patch

    def spec(self) -> dict:
        """Plain arrays that rebuild this manifold with :meth:`from_spec`."""
        return {
            "cicy_ambient": np.array(self.ambient, dtype=np.int64),
            "cicy_configuration": np.array(self.configuration, dtype=np.int64),
            "cicy_exponents": np.concatenate([e for e, _ in self.polynomials]).astype(np.int64),
            "cicy_coefficients": np.concatenate([c for _, c in self.polynomials]).astype(np.complex128),
            "cicy_equation": np.concatenate([np.full(len(c), j) for j, (_, c) in enumerate(self.polynomials)]),
            "name": np.array(self.name),
            "psi": np.array(np.nan + 0j if self.psi is None else self.psi, dtype=np.complex128),
        }

    @classmethod
    def from_spec(cls, spec) -> "CompleteIntersection":
        eq = np.asarray(spec["cicy_equation"])
        e, c = np.asarray(spec["cicy_exponents"]), np.asarray(spec["cicy_coefficients"])
        polys = tuple((e[eq == j], c[eq == j]) for j in range(int(eq.max()) + 1))
        psi = complex(np.asarray(spec["psi"])) if "psi" in spec else complex("nan")
        return cls(tuple(np.asarray(spec["cicy_ambient"]).tolist()), polys,
                   configuration=np.asarray(spec["cicy_configuration"]), name=str(np.asarray(spec["name"])),
                   psi=None if np.isnan(psi.real) else psi)

    def __repr__(self):
        return (f"CompleteIntersection(name={self.name!r}, ambient={self.ambient}, "
                f"configuration={self.configuration.tolist()}, dim={self.dim}, psi={self.psi})")


def _check_t(t, m: int) -> np.ndarray:
    arr = finite_array("t", np.atleast_1d(np.asarray(t, dtype=np.float64)), ndim=1)
    if arr.shape != (m,) or np.any(arr <= 0):
        raise ValueError(f"t: expected {m} positive Kähler parameters (one per projective factor), received {np.asarray(t).tolist()}.")
    return arr


# ---- presets --------------------------------------------------------------------------------


def _all_monomials(ambient, degrees) -> np.ndarray:
    """Every monomial of multidegree ``degrees`` on ``ambient`` (n_mon, N)."""
    per = [list(_multi_indices(int(d), n + 1)) for n, d in zip(ambient, degrees)]
    return np.array([sum(combo, ()) for combo in itertools.product(*per)], dtype=np.int64)


def _random_cicy(ambient, configuration, seed: int, name: str) -> CompleteIntersection:
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    q = np.asarray(configuration)
    polys = []
    for j in range(q.shape[1]):
        e = _all_monomials(ambient, q[:, j])
        g = rng.standard_normal((len(e), 2))
        polys.append((e, g[:, 0] + 1j * g[:, 1]))
    return CompleteIntersection(tuple(ambient), tuple(polys), configuration=q, name=name)


def _bicubic(psi) -> CompleteIntersection:
    # Σ_{ij} A_ij x_i³ y_j³ − 3ψ x0x1x2 y0y1y2 with A = 2J − 3I (−1 on the diagonal, 2 off it). Σ A_ij x_i³ y_j³ is
    # smooth iff every minor of A is non-zero (a singular point needs a vanishing minor); A/3 is a Householder
    # reflection, so its eigenvalues (3, −3, −3) have equal modulus: the member of the family J + λI (symmetric under
    # S_3 × the swap) farthest from its singular members λ ∈ {0, −1, −2, −3}. The earlier A = J + I (λ = 1) is smooth
    # but nearly degenerate (docs/manifolds.md: FS curvature heavy-tailed, σ(k) polynomial in k)
    e, c = [], []
    for i in range(3):
        for j in range(3):
            row = [0] * 6
            row[i], row[3 + j] = 3, 3
            e.append(row)
            c.append(2.0 - 3.0 * (i == j))
    if psi is not None and psi != 0:
        e.append([1] * 6)
        c.append(-3 * complex(psi))
    return CompleteIntersection((2, 2), ((np.array(e), np.array(c, dtype=complex)),), name="bicubic", psi=psi)


def _tetraquadric(psi) -> CompleteIntersection:
    # Σ_{i ∈ {0,1}^4} (2 − 3[|i| = 2]) Π_r (z^r_{i_r})² − ψ Π_r z^r_0 z^r_1, multilinear in X^r = (z^r)². The same
    # pattern as the bicubic (J + λP at λ = −3/2): among the S_4 × Z_2-symmetric tensors (a, b, c, b, a) (value by |i|)
    # it maximises the 10⁻³ quantile of the normalised |∇Q|-weighted FS density (a grid search, docs/manifolds.md),
    # i.e. it stays farthest from degenerate; a singular-point search (Levenberg–Marquardt on ∇Q = 0 from random
    # starts) finds none at ψ = 0 and 0.5. The earlier 1 + [|i| = 2] is smooth but nearly degenerate
    e, c = [], []
    for idx in itertools.product(range(2), repeat=4):
        row = [0] * 8
        for r, i in enumerate(idx):
            row[2 * r + i] = 2
        e.append(row)
        c.append(2.0 - 3.0 * (sum(idx) == 2))
    if psi is not None and psi != 0:
        e.append([1] * 8)
        c.append(-complex(psi))
    return CompleteIntersection((1, 1, 1, 1), ((np.array(e), np.array(c, dtype=complex)),), name="tetraquadric", psi=psi)


def _p5_33(psi) -> CompleteIntersection:
    if psi is None:
        # Fermat type: {Σ Z_i³ = 0, Σ ζ^i Z_i³ = 0}, ζ = e^{iπ/3} (distinct a_i ⇒ smooth)
        e = 3 * np.eye(6, dtype=np.int64)
        return CompleteIntersection((5,), ((e, np.ones(6, complex)), (e, np.exp(1j * np.pi * np.arange(6) / 3))),
                                    name="p5-33")
    # Dwork type (cymyc): {Z0³+Z1³+Z2³ − 3ψ Z3Z4Z5, Z3³+Z4³+Z5³ − 3ψ Z0Z1Z2}; singular at ψ = 0
    e1 = np.vstack([3 * np.eye(6, dtype=np.int64)[:3], [[0, 0, 0, 1, 1, 1]]])
    e2 = np.vstack([3 * np.eye(6, dtype=np.int64)[3:], [[1, 1, 1, 0, 0, 0]]])
    c = np.array([1, 1, 1, -3 * complex(psi)])
    return CompleteIntersection((5,), ((e1, c), (e2, c)), name="p5-33", psi=psi)


_CONFIG = {"bicubic": ((2, 2), [[3], [3]]), "tetraquadric": ((1, 1, 1, 1), [[2], [2], [2], [2]]), "p5-33": ((5,), [[3, 3]])}
CICY_PRESETS = {"bicubic": _bicubic, "tetraquadric": _tetraquadric, "p5-33": _p5_33}
#: Euler characteristics of the presets (topological; also :func:`euler_characteristic_topological`)
CICY_EULER_CHARACTERISTIC = {"bicubic": -162, "tetraquadric": -128, "p5-33": -144}


def cicy_preset(name: str, psi=None, seed=None) -> CompleteIntersection:
    """A named CICY: ``"bicubic"`` (P²×P²)[3,3], ``"tetraquadric"`` (P¹)⁴[2,2,2,2], ``"p5-33"`` P⁵[3,3].

    - neither ``psi`` nor ``seed``: the Fermat-type member (bicubic Σ(2 − 3δ_ij)x_i³y_j³; tetraquadric
      Σ_{i∈{0,1}⁴} (2 − 3[|i| = 2]) Π_r (z^r_{i_r})²; P⁵[3,3] {Σ Z_i³, Σ e^{iπ i/3} Z_i³});
    - ``psi``: the Dwork-type deformation (bicubic − 3ψ Πx Πy; tetraquadric − ψ Π z^r_0 z^r_1;
      P⁵[3,3] {Z0³+Z1³+Z2³ − 3ψZ3Z4Z5, Z3³+Z4³+Z5³ − 3ψZ0Z1Z2}, singular at ψ = 0);
    - ``seed``: every monomial of the configuration with i.i.d. standard complex Gaussian coefficients
      drawn from ``SeedSequence(seed)``.
    """
    if not isinstance(name, str) or name.strip().lower().replace("_", "-") not in CICY_PRESETS:
        raise ValueError(f"name: unknown CICY preset {name!r}; choose one of {sorted(CICY_PRESETS)}.")
    key = name.strip().lower().replace("_", "-")
    if psi is not None and seed is not None:
        raise ValueError(f"psi, seed: pass psi (Dwork-type member) or seed (random coefficients), not both; received psi={psi!r}, seed={seed!r}.")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"seed: expected a non-negative integer, received {seed!r}.")
        amb, q = _CONFIG[key]
        return _random_cicy(amb, q, int(seed), f"{key}-random{int(seed)}")
    if psi is not None:
        psi = family_parameter(psi)
        if key == "p5-33" and abs(psi) < 1e-12:
            raise ValueError("psi: the Dwork-type P⁵[3,3] is singular at ψ = 0 (a cone over two cubic curves); "
                             "use psi=None for the smooth Fermat-type member or a non-zero psi.")
    return CICY_PRESETS[key](psi)


# ---- charts ---------------------------------------------------------------------------------


def cicy_chart_data(manifold: CompleteIntersection, z, patch=None, elim=None) -> dict:
    """Per-factor normalisation and chart of points z (M, N).

    Returns ``points`` (M, N) (patch coordinates = 1), ``patch`` (M, m), ``elim`` (M, K) (default: the
    K non-patch coordinates with the largest |det ∂Q/∂z_E|), ``kept`` (M, dim), ``q`` (M, K),
    ``dQ`` (M, K, N), ``omega_sq`` (M,) = 1/|det ∂Q/∂z_E|², ``jacobian`` (M, dim, N).
    ``patch``/``elim`` may be forced with (M, m)/(M, K) arrays (or one row for all points)."""
    z = np.asarray(z, dtype=np.complex128)
    M, N = z.shape
    m, K, dim = manifold.n_factors, manifold.n_equations, manifold.dim
    rows = np.arange(M)
    if patch is None:
        pts, patch = manifold.normalise(z)
    else:
        patch = np.broadcast_to(np.asarray(patch, dtype=np.int64), (M, m)).copy()
        pts = z.copy()
        for r in range(m):
            b = manifold.blocks[r]
            if np.any((patch[:, r] < b[0]) | (patch[:, r] > b[-1])):
                raise ValueError(f"patch: column {r} must index a coordinate of factor {r} ({b.tolist()}).")
            zp = pts[rows, patch[:, r]]
            pts[:, b] = pts[:, b] / zp[:, None]
            pts[rows, patch[:, r]] = 1.0
    q, dq = manifold.Q_and_dQ(pts)  # (M, K), (M, K, N)
    is_patch = np.zeros((M, N), dtype=bool)
    is_patch[rows[:, None], patch] = True
    if elim is None:
        combos = np.array(list(itertools.combinations(range(N), K)), dtype=np.int64)  # (C, K)
        minors = np.abs(np.linalg.det(np.moveaxis(dq[:, :, combos], 2, 1)))  # (M, C)
        minors[np.any(is_patch[:, combos], axis=2)] = -1.0
        elim = combos[np.argmax(minors, axis=1)]
    else:
        elim = np.broadcast_to(np.asarray(elim, dtype=np.int64), (M, K)).copy()
        if np.any(is_patch[rows[:, None], elim]) or np.any(np.diff(np.sort(elim, axis=1), axis=1) == 0):
            raise ValueError("elim: the eliminated coordinates must be distinct and differ from the patch coordinates.")
    mask = ~is_patch
    mask[rows[:, None], elim] = False
    kept = np.nonzero(mask)[1].reshape(M, dim)
    B = np.take_along_axis(dq, elim[:, None, :], axis=2)  # (M, K, K)
    A = np.take_along_axis(dq, kept[:, None, :], axis=2)  # (M, K, dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        detB = np.linalg.det(B)
        X = np.linalg.solve(B, A)  # (M, K, dim)
        omega_sq = 1.0 / (detB.real ** 2 + detB.imag ** 2)
    jac = np.zeros((M, dim, N), dtype=np.complex128)
    jac[rows[:, None], np.arange(dim)[None, :], kept] = 1.0
    jac[rows[:, None, None], np.arange(dim)[None, :, None], elim[:, None, :]] = -np.swapaxes(X, 1, 2)
    return {"points": pts, "patch": patch, "elim": elim, "kept": kept, "q": q, "dQ": dq,
            "omega_sq": omega_sq, "jacobian": jac}


def cicy_fs_factor_pullbacks(manifold: CompleteIntersection, points, jacobian) -> np.ndarray:
    r"""g_r = P_r g^{FS}_r P_r^† for each factor (M, m, dim, dim), t_r = 1:
    g^{FS}_r = (1/π)(δ/|z_r|² − z̄_r z_r^T/|z_r|⁴) on the coordinates of factor r."""
    z = np.asarray(points)
    P = np.asarray(jacobian)
    out = []
    for b in manifold.blocks:
        zb, Pb = z[:, b], P[:, :, b]
        s = np.sum(zb.real ** 2 + zb.imag ** 2, axis=1)  # (M,)
        v = np.einsum("mai,mi->ma", Pb, np.conj(zb))  # (M, dim) = P_r z̄_r
        g = np.einsum("mai,mbi->mab", Pb, np.conj(Pb)) / s[:, None, None]
        g -= v[:, :, None] * np.conj(v)[:, None, :] / (s * s)[:, None, None]
        out.append(g / np.pi)
    return np.stack(out, axis=1)


def mixed_coefficients(g_factors) -> dict:
    r"""D_α (dict α → (M,) float) with det(Σ_r t_r g_r) = Σ_{|α|=dim} t^α D_α, for g (M, m, dim, dim).

    Interpolation on the simplex lattice {α : |α| = dim} (unisolvent for homogeneous polynomials of
    degree dim): det(Σ_r β_r g_r) at every lattice point β, then one fixed linear solve."""
    g = np.asarray(g_factors)
    M, m, dim, _ = g.shape
    alphas = list(_multi_indices(dim, m))
    B = np.array(alphas, dtype=np.float64)  # (L, m) evaluation points
    V = np.prod(B[:, None, :] ** B[None, :, :], axis=2)  # (L, L): β^α
    vals = np.linalg.det(np.einsum("lr,mrab->mlab", B, g)).real  # (M, L)
    coef = np.linalg.solve(V, vals.T).T  # (M, L)
    return {a: coef[:, i] for i, a in enumerate(alphas)}


def _splits(manifold: CompleteIntersection):
    """Admissible subspace dimensions k (Σk = K, 0 ≤ k_r ≤ n_r, d_{n−k} > 0) with c = n − k and d_c."""
    d = manifold.intersection_numbers()
    out = []
    for k in _multi_indices(manifold.n_equations, manifold.n_factors):
        if any(kr > nr for kr, nr in zip(k, manifold.ambient)):
            continue
        c = tuple(nr - kr for nr, kr in zip(manifold.ambient, k))
        if d.get(c, 0) > 0:
            out.append((k, c, d[c]))
    return out


def _sampling_density(manifold: CompleteIntersection, g_factors) -> np.ndarray:
    """Σ_c (c!/dim!) D_c (M,) over the admissible splits: the density of the sampled points (× Σ_c d_c)."""
    D = mixed_coefficients(g_factors)
    dim = manifold.dim
    rho = 0.0
    for _, c, _ in _splits(manifold):
        rho = rho + math.prod(math.factorial(x) for x in c) / math.factorial(dim) * D[c]
    return rho


def _weights(manifold, points, jacobian, omega_sq, frame_maps=None) -> np.ndarray:
    total = sum(dc for _, _, dc in _splits(manifold))
    return total * omega_sq / cicy_sampling_density(manifold, points, jacobian, frame_maps)


def crofton_frame_map(p, lam: float) -> np.ndarray:
    r"""M = I + (√(1+λ) − 1) p p†/|p|² ((n+1, n+1) complex128) for a point p ∈ C^{n+1} \ 0 and λ > −1.

    Vectors M u with u ~ CN(0, I) are CN(0, I + λ p p†/|p|²); random subspaces spanned by them
    concentrate near [p] at the scale 1/√(1+λ) (λ > 0), and the Crofton density of their intersection
    points is that of the hermitian metric h = (M M†)^{-1} = I − λ/(1+λ) p p†/|p|² (see
    :func:`cicy_sampling_density`). λ = 0 gives the identity (the unitary-invariant sampler)."""
    p = np.asarray(p, dtype=np.complex128)
    if p.ndim != 1 or p.size < 2 or not np.all(np.isfinite(p)) or np.linalg.norm(p) == 0:
        raise ValueError(f"p: expected a non-zero finite vector of one factor's coordinates, received {p!r}.")
    lam = float(lam)
    if not np.isfinite(lam) or lam <= -1:
        raise ValueError(f"lam: expected a finite number > -1 (the extra variance along p), received {lam!r}.")
    u = p / np.linalg.norm(p)
    return np.eye(p.size, dtype=np.complex128) + (math.sqrt(1.0 + lam) - 1.0) * np.outer(u, np.conj(u))


def _check_frame_maps(manifold: CompleteIntersection, frame_maps):
    """None, or a tuple of m invertible complex matrices (n_r+1, n_r+1)."""
    if frame_maps is None:
        return None
    maps = list(frame_maps)
    if len(maps) != manifold.n_factors:
        raise ValueError(f"frame_maps: expected one matrix per factor ({manifold.n_factors}), received {len(maps)}.")
    out = []
    for r, (M, nr) in enumerate(zip(maps, manifold.ambient)):
        M = np.asarray(M, dtype=np.complex128)
        if M.shape != (nr + 1, nr + 1) or not np.all(np.isfinite(M)):
            raise ValueError(f"frame_maps[{r}]: expected a finite ({nr + 1}, {nr + 1}) matrix, received shape {M.shape}.")
        if np.linalg.cond(M) > 1e12:
            raise ValueError(f"frame_maps[{r}]: the matrix must be invertible, received condition number {np.linalg.cond(M):.3g}; "
                             "use e.g. crofton_frame_map(p, lam) with a moderate lam.")
        out.append(M)
    return tuple(out)


def cicy_sampling_density(manifold: CompleteIntersection, points, jacobian, frame_maps=None) -> np.ndarray:
    r"""ρ_h = Σ_c (c!/dim!) D_c(g^h) (M,): the density (× Σ_c d_c, per chart measure d^{2dim}x) of the
    points drawn by ``sample_cicy(manifold, n, frame_maps=frame_maps)``.

    Subspaces spanned by v = M_r u (u ~ CN(0, I)) are M_r L₀ with L₀ unitary-invariant, so their
    intersection points with X are M (M^{-1}X ∩ L₀): by the Crofton formula on M^{-1}X their density on X
    is Π_r (ω^{h_r})^{c_r} with ω^{h_r} = (i/2π) ∂∂̄ log(z_r† h_r z_r), h_r = (M_r M_r†)^{-1}, i.e. the FS form
    of w_r = M_r^{-1} z_r. Hence g^h_r = the FS pullback of (w, ∂w/∂x) = (M^{-1} z, M^{-1} P), and since
    ω^{h_r} is cohomologous to ω_r, ∫_X Π_r (ω^{h_r})^{c_r} = d_c exactly: the weights
    w = (Σ_c d_c)|Ω|²/ρ_h satisfy E[w f/|Ω|²] = ∫_X f for every top form f. points (M, N), jacobian (M, dim, N);
    ``frame_maps=None`` is the unitary-invariant sampler (h = I)."""
    maps = _check_frame_maps(manifold, frame_maps)
    z = np.asarray(points, dtype=np.complex128)
    P = np.asarray(jacobian, dtype=np.complex128)
    if maps is not None:
        N = manifold.n_coords
        Minv = np.zeros((N, N), dtype=np.complex128)
        for b, M in zip(manifold.blocks, maps):
            Minv[np.ix_(b, b)] = np.linalg.inv(M)
        z = z @ Minv.T  # w = M^{-1} z   (M, N)
        P = P @ Minv.T  # ∂w/∂x_a = M^{-1} ∂z/∂x_a   (M, dim, N)
    return _sampling_density(manifold, cicy_fs_factor_pullbacks(manifold, z, P))


@dataclass(frozen=True, eq=False)
class CICYPointSet:
    r"""Points on a CICY with Monte-Carlo weights for |Ω|² and chart data (all arrays read-only).

    points (n, N) complex128 (per factor normalised), weights (n,) float64 with
    mean(weights · det g_t / omega_sq) = ∫_X J_t^dim, omega_sq (n,) = |Ω|², patch (n, m) int64,
    elim (n, K) int64, jacobian (n, dim, N) complex128 (P_{aI} = ∂z_I/∂x_a), manifold,
    rejected_subspaces: random subspaces dropped by the sampler (numerically degenerate)."""

    points: np.ndarray
    weights: np.ndarray
    omega_sq: np.ndarray
    patch: np.ndarray
    elim: np.ndarray
    jacobian: np.ndarray
    manifold: CompleteIntersection
    rejected_subspaces: int = 0

    def __post_init__(self):
        if not isinstance(self.manifold, CompleteIntersection):
            raise TypeError(f"manifold: expected a CompleteIntersection, received {type(self.manifold).__name__}.")
        mf = self.manifold
        n = np.asarray(self.points).shape[0]
        want = {"points": ((n, mf.n_coords), np.complex128), "weights": ((n,), np.float64),
                "omega_sq": ((n,), np.float64), "patch": ((n, mf.n_factors), np.int64),
                "elim": ((n, mf.n_equations), np.int64), "jacobian": ((n, mf.dim, mf.n_coords), np.complex128)}
        for key, (shape, dt) in want.items():
            arr = np.asarray(getattr(self, key))
            if arr.shape != shape:
                raise ValueError(f"{key}: expected shape {shape} for {n} points on {mf.name}, received {arr.shape}.")
            arr = arr.astype(dt, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def dim(self) -> int:
        return self.manifold.dim

    @property
    def kept(self) -> np.ndarray:
        """(n, dim) int64: the local coordinates (neither patch nor eliminated), increasing."""
        M, N = self.points.shape
        mask = np.ones((M, N), dtype=bool)
        rows = np.arange(M)[:, None]
        mask[rows, self.patch] = False
        mask[rows, self.elim] = False
        return np.nonzero(mask)[1].reshape(M, self.dim)

    def __getitem__(self, idx) -> "CICYPointSet":
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if int(idx) != -1 else None)
        return CICYPointSet(self.points[idx], self.weights[idx], self.omega_sq[idx], self.patch[idx],
                            self.elim[idx], self.jacobian[idx], self.manifold, self.rejected_subspaces)

    def split(self, n_train: int) -> tuple["CICYPointSet", "CICYPointSet"]:
        n_train = positive_int("n_train", n_train)
        if n_train >= len(self):
            raise ValueError(f"n_train: must be < the number of points {len(self)}, received {n_train}.")
        return self[:n_train], self[n_train:]

    def __repr__(self):
        return f"CICYPointSet(n={len(self)}, manifold={self.manifold.name!r}, dim={self.dim})"


def cicy_pointset_from_points(manifold: CompleteIntersection, points, weights=None, *, patch=None, elim=None) -> CICYPointSet:
    """Charts, |Ω|², Jacobians of given points on X; weights default to the sampler's
    (Σ_c d_c) |Ω|² / Σ_c (c!/dim!) D_c (right for points drawn by :func:`sample_cicy`)."""
    pts = finite_array("points", points, ndim=2)
    if pts.shape[1] != manifold.n_coords:
        raise ValueError(f"points: expected {manifold.n_coords} coordinates for {manifold.name}, received shape {pts.shape}.")
    cd = cicy_chart_data(manifold, pts, patch=patch, elim=elim)
    if weights is None:
        weights = _weights(manifold, cd["points"], cd["jacobian"], cd["omega_sq"])
    return CICYPointSet(cd["points"], weights, cd["omega_sq"], cd["patch"], cd["elim"], cd["jacobian"], manifold)


def cicy_fs_pullback(ps: CICYPointSet, t=None) -> np.ndarray:
    """Pulled-back FS metric g_t = Σ_r t_r g_r (n, dim, dim) in each point's chart (t default all ones)."""
    t = np.ones(ps.manifold.n_factors) if t is None else _check_t(t, ps.manifold.n_factors)
    return np.einsum("r,mrab->mab", t, cicy_fs_factor_pullbacks(ps.manifold, ps.points, ps.jacobian))


def cicy_fs_det(ps: CICYPointSet, t=None) -> np.ndarray:
    """det g_t (n,) float64 of the pulled-back FS metric with Kähler class t."""
    return np.linalg.det(cicy_fs_pullback(ps, t)).real


# ---- sampling -------------------------------------------------------------------------------


def _roots_from_coefficients(a: np.ndarray) -> np.ndarray:
    """Roots (L, d) of polynomials with ascending coefficients a (L, d+1): batched companion eigenvalues."""
    L, dp1 = a.shape
    d = dp1 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        monic = a[:, :d] / a[:, d:d + 1]
    monic = np.where(np.isfinite(monic), monic, 0.0)
    C = np.zeros((L, d, d), dtype=np.complex128)
    C[:, np.arange(1, d), np.arange(d - 1)] = 1.0
    C[:, :, d - 1] = -monic
    return np.linalg.eigvals(C)


def _roots_from_values(vals: np.ndarray) -> np.ndarray:
    """Roots (L, d) of the degree-d polynomials given by values (L, d+1) at the (d+1)-th roots of unity."""
    return _roots_from_coefficients(np.fft.fft(vals, axis=1) / vals.shape[1])


def _frames(g, manifold, k, maps=None):
    """Gaussian frames from normals g (R, Σ_r (k_r+1)(n_r+1), 2): list over factors of (R, k_r+1, n_r+1).

    ``maps`` (one (n_r+1, n_r+1) matrix M_r per factor, or None): each spanning vector u becomes M_r u."""
    c = g[..., 0] + 1j * g[..., 1]
    R = c.shape[0]
    out, s = [], 0
    for r, (kr, nr) in enumerate(zip(k, manifold.ambient)):
        sz = (kr + 1) * (nr + 1)
        F = c[:, s:s + sz].reshape(R, kr + 1, nr + 1)
        out.append(F if maps is None else F @ maps[r].T)  # rows u ↦ M_r u
        s += sz
    return out


def _embed(frames, k, u):
    """z (…, N) from affine parameters u (…, K): factor r gets F_r[0] + Σ_i u_{idx} F_r[i+1]."""
    parts, pos = [], 0
    for F, kr in zip(frames, k):
        shape = u.shape[:-1] + (F.shape[-1],)
        zr = np.broadcast_to(F[(slice(None),) + (None,) * (u.ndim - 2) + (0,)], shape).copy()
        for i in range(kr):
            zr = zr + u[..., pos + i, None] * F[(slice(None),) + (None,) * (u.ndim - 2) + (i + 1,)]
        parts.append(zr)
        pos += kr
    return np.concatenate(parts, axis=-1)


def _tangent(frames, k, u_ndim):
    """∂z/∂u (R, K, N) (constant: the embedding is affine in u), broadcastable over root axes."""
    R = frames[0].shape[0]
    N = sum(F.shape[-1] for F in frames)
    K = sum(k)
    T = np.zeros((R, K, N), dtype=np.complex128)
    pos, off = 0, 0
    for F, kr in zip(frames, k):
        n1 = F.shape[-1]
        for i in range(kr):
            T[:, pos + i, off:off + n1] = F[:, i + 1]
        pos += kr
        off += n1
    return T


def _newton_u(manifold, frames, k, u, steps: int):
    """Newton on Q(z(u)) = 0 in the K affine parameters: u ← u − (∂Q/∂u)^{-1} Q. u (R, B, K)."""
    T = _tangent(frames, k, u.ndim)  # (R, K, N)
    for _ in range(steps):
        z = _embed(frames, k, u)
        q, dq = manifold.Q_and_dQ(z)  # (R, B, K), (R, B, K, N)
        Ju = np.einsum("rbjn,rkn->rbjk", dq, T)  # (R, B, K_eq, K_u)
        with np.errstate(all="ignore"):
            step = np.linalg.solve(Ju, q[..., None])[..., 0]
        u = np.where(np.isfinite(step), u - step, u)
    return u


def _solve_k1(manifold, frames, k, c_deg):
    """K = 1: the line parameter's polynomial of degree c_deg; roots (R, c_deg, 1)."""
    nodes = np.exp(2j * np.pi * np.arange(c_deg + 1) / (c_deg + 1))
    z = _embed(frames, k, np.broadcast_to(nodes[None, :, None], (frames[0].shape[0], c_deg + 1, 1)))
    vals = manifold.Q(z)[..., 0]  # (R, d+1)
    return _roots_from_values(vals)[..., None]


def _solve_k2(manifold, frames, k, n_sol):
    """K = 2 by the Sylvester resultant in y; roots (R, n_sol, 2)."""
    R = frames[0].shape[0]
    # which factor carries y (the second affine parameter) and the y-degrees of Q_1, Q_2
    pos, ry = 0, None
    for r, kr in enumerate(k):
        if pos <= 1 < pos + kr:
            ry = r
        pos += kr
    dy = [int(manifold.configuration[ry, j]) for j in range(2)]
    Dy = max(dy)
    ynodes = np.exp(2j * np.pi * np.arange(Dy + 1) / (Dy + 1))
    xnodes = np.exp(2j * np.pi * np.arange(n_sol + 1) / (n_sol + 1))
    u = np.stack(np.broadcast_arrays(xnodes[:, None], ynodes[None, :]), axis=-1)  # (X, Y, 2)
    u = np.broadcast_to(u[None], (R,) + u.shape)
    z = _embed(frames, k, u.reshape(R, -1, 2))
    vals = manifold.Q(z).reshape(R, n_sol + 1, Dy + 1, 2)
    coef = np.fft.fft(vals, axis=2) / (Dy + 1)  # (R, X, Dy+1, 2) ascending in y
    S = dy[0] + dy[1]
    syl = np.zeros((R, n_sol + 1, S, S), dtype=np.complex128)
    for i in range(dy[1]):  # rows of f_1: descending coefficients shifted
        syl[:, :, i, i:i + dy[0] + 1] = coef[:, :, dy[0]::-1, 0]
    for i in range(dy[0]):
        syl[:, :, dy[1] + i, i:i + dy[1] + 1] = coef[:, :, dy[1]::-1, 1]
    res = np.linalg.det(syl)  # (R, X)
    x = _roots_from_values(res)  # (R, n_sol)
    # y: the common root of Q_1(x, ·) and Q_2(x, ·) is the null vector (y^{S-1}, …, y, 1) of the
    # (singular) Sylvester matrix at x; least squares with the last entry fixed to 1
    u = np.stack(np.broadcast_arrays(x[:, :, None], ynodes[None, None, :]), axis=-1)  # (R, n, Y, 2)
    z = _embed(frames, k, u.reshape(R, -1, 2))
    cy = np.fft.fft(manifold.Q(z).reshape(R, n_sol, Dy + 1, 2), axis=2) / (Dy + 1)  # (R, n, Dy+1, 2)
    syl = np.zeros((R, n_sol, S, S), dtype=np.complex128)
    for i in range(dy[1]):
        syl[:, :, i, i:i + dy[0] + 1] = cy[:, :, dy[0]::-1, 0]
    for i in range(dy[0]):
        syl[:, :, dy[1] + i, i:i + dy[1] + 1] = cy[:, :, dy[1]::-1, 1]
    A = syl[..., :, : S - 1]  # (R, n, S, S-1)
    AH = np.conj(np.swapaxes(A, -1, -2))
    with np.errstate(all="ignore"):
        w = np.linalg.solve(AH @ A, -(AH @ syl[..., :, S - 1:]))[..., 0]  # (R, n, S-1)
    y = w[..., S - 2]
    return np.stack([x, y], axis=-1)


def _polish_full(manifold, z, patch, steps: int = 2):
    """Minimal-norm Gauss–Newton on Q(z) = 0 in the non-patch coordinates: z ← z − J^H (J J^H)^{-1} Q."""
    rows = np.arange(z.shape[0])[:, None]
    for _ in range(steps):
        q, dq = manifold.Q_and_dQ(z)
        dq[rows[:, :, None], np.arange(dq.shape[1])[None, :, None], patch[:, None, :]] = 0.0
        JJ = np.einsum("mjn,mkn->mjk", dq, np.conj(dq))
        with np.errstate(all="ignore"):
            lam = np.linalg.solve(JJ, q[..., None])[..., 0]
        step = np.einsum("mjn,mj->mn", np.conj(dq), lam)
        ok = np.all(np.isfinite(step), axis=1)
        z = np.where(ok[:, None], z - step, z)
    return z


def _process_rounds(manifold, rng, R: int, splits, maps=None):
    """One chunk of R rounds: every split once per round. Returns points (M, N), round ids (M,), rejected.
    The Gaussians of a round are drawn together (round-major), so results do not depend on the chunk.
    ``maps``: per-factor frame maps M_r (subspaces spanned by M_r u, u standard; see :func:`sample_cicy`)."""
    pts, rid, rejected = [], [], 0
    sizes = [sum((kr + 1) * (nr + 1) for kr, nr in zip(k, manifold.ambient)) for k, _, _ in splits]
    g = rng.standard_normal((R, sum(sizes), 2))
    offs = np.cumsum([0] + sizes)
    for (k, c, dc), o0, o1 in zip(splits, offs[:-1], offs[1:]):
        frames = _frames(g[:, o0:o1], manifold, k, maps)
        K = manifold.n_equations
        if K == 1:
            u = _solve_k1(manifold, frames, k, dc)
        else:
            u = _solve_k2(manifold, frames, k, dc)
        u = _newton_u(manifold, frames, k, u, steps=3)
        z = _embed(frames, k, u).reshape(R * dc, -1)
        ok = np.all(np.isfinite(z), axis=1)
        z = np.where(ok[:, None], z, 1.0)
        z, patch = manifold.normalise(z)
        res = np.max(np.abs(manifold.Q(z)) / manifold.term_scale(z), axis=1)
        redo = np.flatnonzero(ok & ~(res <= 1e-14))  # polish in the full coordinates where needed
        if redo.size:
            z2, _ = manifold.normalise(_polish_full(manifold, z[redo], patch[redo]))
            z[redo] = z2
            res[redo] = np.max(np.abs(manifold.Q(z2)) / manifold.term_scale(z2), axis=1)
        good = (ok & (res <= _RESIDUAL_TOL)).reshape(R, dc)
        # distinct solutions within each subspace (a duplicate means a lost root)
        zz = z.reshape(R, dc, -1)
        if dc > 1:
            dist = np.max(np.abs(zz[:, :, None, :] - zz[:, None, :, :]), axis=3)
            dist[:, np.arange(dc), np.arange(dc)] = np.inf
            good &= (dist.min(axis=2) > 1e-8)
        keep_sub = np.all(good, axis=1)
        rejected += int(np.sum(~keep_sub))
        sel = np.repeat(keep_sub, dc)
        pts.append(z[sel])
        rid.append(np.repeat(np.arange(R), dc)[sel])
    pts = np.concatenate(pts)
    rid = np.concatenate(rid)
    order = np.argsort(rid, kind="stable")
    return pts[order], rid[order], rejected


def sample_cicy(manifold: CompleteIntersection, n: int, seed: int = 0, *, chunk: int = 4096,
                progress: bool | None = None, frame_maps=None) -> CICYPointSet:
    r"""Sample exactly ``n`` points of the CICY X with weights w = (Σ_c d_c)|Ω|²/Σ_c (c!/dim!) D_c.

    Algorithm in the module docstring. ``seed`` feeds ``SeedSequence(seed).spawn(2)`` (subspaces; the
    choice among the points of the last round); ``chunk`` = rounds per batch (the stream is drawn
    round-major, so results do not depend on it).
    ``frame_maps`` (importance sampling): one invertible (n_r+1, n_r+1) matrix M_r per factor (e.g.
    :func:`crofton_frame_map`); the subspaces are spanned by M_r u, the points have the density of the
    metrics h_r = (M_r M_r†)^{-1} (:func:`cicy_sampling_density`) and the weights are
    (Σ_c d_c)|Ω|²/ρ_h, so mean(w f/|Ω|²) is still unbiased for ∫_X f. None: the standard sampler.
    Raises NotImplementedError for K ≥ 3 equations."""
    if not isinstance(manifold, CompleteIntersection):
        raise TypeError(f"manifold: expected a CompleteIntersection (e.g. cicy_preset('bicubic')), received {type(manifold).__name__}.")
    if manifold.n_equations > 2:
        raise NotImplementedError(f"manifold: sampling is implemented for K <= 2 equations, received K = {manifold.n_equations}.")
    n = positive_int("n", n)
    chunk = positive_int("chunk", chunk)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed: expected a non-negative integer, received {seed!r}.")
    maps = _check_frame_maps(manifold, frame_maps)
    splits = _splits(manifold)
    per_round = sum(dc for _, _, dc in splits)
    ss_sub, ss_pick = np.random.SeedSequence(int(seed)).spawn(2)
    rng = np.random.default_rng(ss_sub)
    show = (n >= 200_000) if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="pt", unit_scale=True, desc=f"sampling {manifold.name}", file=sys.stderr)
    out, filled, rejected = [], 0, 0
    try:
        while filled < n:
            R = min(chunk, -(-(n - filled) // per_round))
            z, rid, rej = _process_rounds(manifold, rng, R, splits, maps)
            rejected += rej
            take = min(len(z), n - filled)
            if take < len(z):
                last = rid[take - 1] if take > 0 else rid[0]
                first = int(np.searchsorted(rid, last, side="left"))
                members = np.flatnonzero(rid == last)
                pick = np.sort(np.random.default_rng(ss_pick).permutation(members)[: take - first])
                z = z[np.concatenate([np.arange(first), pick])]
            out.append(z)
            filled += len(z)
            if bar is not None:
                bar.update(len(z))
    finally:
        if bar is not None:
            bar.close()
    pts = np.concatenate(out)
    if maps is None:
        ps = cicy_pointset_from_points(manifold, pts)
        return CICYPointSet(ps.points, ps.weights, ps.omega_sq, ps.patch, ps.elim, ps.jacobian, manifold, rejected)
    cd = cicy_chart_data(manifold, pts)
    w = _weights(manifold, cd["points"], cd["jacobian"], cd["omega_sq"], maps)
    return CICYPointSet(cd["points"], w, cd["omega_sq"], cd["patch"], cd["elim"], cd["jacobian"], manifold, rejected)


def cicy_mixture_weights(ps: CICYPointSet, components, fractions, *, chunk: int = 20000) -> np.ndarray:
    r"""Weights (n,) of points drawn from the mixture q = Σ_j f_j q_j of :func:`sample_cicy` samplers:
    w = (Σ_c d_c)|Ω|² / Σ_j f_j ρ_{h_j} (ρ_h: :func:`cicy_sampling_density`; every point under every component).

    ``components``: a list of ``frame_maps`` (None: the standard sampler); ``fractions`` (J,) positive, sum 1.
    With a fixed allocation n_j = f_j n (as :func:`sample_cicy_mixture` draws) the estimator
    mean(w f/|Ω|²) is unbiased for ∫_X f (the balance heuristic of multiple importance sampling)."""
    comps = [_check_frame_maps(ps.manifold, c) for c in components]
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (len(comps),) or np.any(~np.isfinite(f)) or np.any(f <= 0) or abs(f.sum() - 1) > 1e-12:
        raise ValueError(f"fractions: expected {len(comps)} positive numbers summing to 1, received {f.tolist()}.")
    chunk = positive_int("chunk", chunk)
    m = ps.manifold
    # per factor the metrics h_jr = (M M†)^{-1} (J, n_r+1, n_r+1); identity for the standard component
    hs = [np.stack([np.eye(nr + 1, dtype=np.complex128) if c is None else np.linalg.inv(c[r] @ np.conj(c[r]).T)
                    for c in comps]) for r, nr in enumerate(m.ambient)]
    lattice = _density_lattice(m)
    sub = max(1, chunk // max(1, len(comps)))  # points per vectorised block: (sub, J, dim, dim) arrays
    rho = np.empty(len(ps))
    for lo in range(0, len(ps), sub):
        sl = slice(lo, lo + sub)
        rho[sl] = _crofton_densities(m, ps.points[sl], ps.jacobian[sl], hs, lattice) @ f
    return sum(dc for _, _, dc in _splits(m)) * ps.omega_sq / rho


def _density_lattice(manifold: CompleteIntersection):
    """(β (L', m), a (L',)) with Σ_c (c!/dim!) D_c = Σ_l a_l det(Σ_r β_lr g_r): the lattice interpolation of
    :func:`mixed_coefficients` contracted once with the split coefficients (zero rows dropped)."""
    alphas = list(_multi_indices(manifold.dim, manifold.n_factors))
    B = np.array(alphas, dtype=np.float64)  # (L, m)
    V = np.prod(B[:, None, :] ** B[None, :, :], axis=2)  # (L, L): V[l, i] = β_l^{α_i}
    k = np.zeros(len(alphas))
    for _, c, _ in _splits(manifold):
        k[alphas.index(c)] = math.prod(math.factorial(x) for x in c) / math.factorial(manifold.dim)
    a = np.linalg.solve(V.T, k)  # coef = V^{-1} vals, so Σ_c k_c coef_c = (V^{-T} k) · vals
    keep = np.abs(a) > 1e-12 * np.abs(a).max()
    return B[keep], a[keep]


def _det_hermitian(G):
    """det of hermitian (…, d, d) matrices (real part); closed form for d ≤ 3."""
    d = G.shape[-1]
    if d == 1:
        return G[..., 0, 0].real
    if d == 2:
        return (G[..., 0, 0] * G[..., 1, 1] - G[..., 0, 1] * G[..., 1, 0]).real
    if d == 3:
        return (G[..., 0, 0] * (G[..., 1, 1] * G[..., 2, 2] - G[..., 1, 2] * G[..., 2, 1])
                - G[..., 0, 1] * (G[..., 1, 0] * G[..., 2, 2] - G[..., 1, 2] * G[..., 2, 0])
                + G[..., 0, 2] * (G[..., 1, 0] * G[..., 2, 1] - G[..., 1, 1] * G[..., 2, 0])).real
    return np.linalg.det(G).real


def _crofton_densities(manifold, points, jacobian, hs, lattice) -> np.ndarray:
    """ρ_{h_j} (M, J) of every point under every component (vectorised :func:`cicy_sampling_density`):
    per factor g^h = (1/π)(P h P†/s − v v†/s²) with s = z†hz, v_a = z† h P_a (the FS form of M^{-1}z)."""
    z = np.asarray(points)
    P = np.asarray(jacobian)
    M, dim, _ = P.shape
    g = []
    for b, h in zip(manifold.blocks, hs):
        zb, Pb = z[:, b], P[:, :, b]  # (M, n+1), (M, dim, n+1)
        hT = np.swapaxes(h, 1, 2)  # (J, n+1, n+1)
        s = np.einsum("jmi,mi->jm", zb[None] @ hT, np.conj(zb)).real  # (J, M): z† h z  (h hermitian)
        hP = (Pb.reshape(M * dim, -1)[None] @ hT).reshape(len(h), M, dim, -1)  # (J, M, dim, n+1): h P_a
        A = hP @ np.conj(np.swapaxes(Pb, 1, 2))[None]  # (J, M, dim, dim): P_b† h P_a
        v = (hP @ np.conj(zb)[None, :, :, None])[..., 0]  # (J, M, dim): z† h P_a
        g.append((A / s[..., None, None] - v[..., :, None] * np.conj(v)[..., None, :] / (s * s)[..., None, None]) / np.pi)
    beta, a = lattice
    rho = 0.0
    for bl, al in zip(beta, a):
        rho = rho + al * _det_hermitian(sum(w * gr for w, gr in zip(bl, g) if w != 0))
    return rho.T  # (M, J)


def sample_cicy_mixture(manifold: CompleteIntersection, counts, components, seed: int = 0, *,
                        chunk: int = 4096) -> tuple[CICYPointSet, np.ndarray]:
    r"""Importance sampling: ``counts[j]`` points from ``sample_cicy(manifold, ·, frame_maps=components[j])``
    (seeds from ``SeedSequence(seed)``), concatenated, with the mixture weights of
    :func:`cicy_mixture_weights` at the fractions f_j = counts[j]/n (deterministic allocation, so
    mean(w f/|Ω|²) is unbiased for ∫_X f and its variance is Σ_j f_j² Var_j/n_j).

    Returns (points with the mixture weights, component (n,) int64: which component drew each point).
    Keep a standard component (None) with a positive count: the mixture density is then positive wherever
    the standard one is (defensive importance sampling)."""
    counts = [int(c) for c in counts]
    if len(counts) != len(components) or any(c < 0 for c in counts) or sum(counts) == 0:
        raise ValueError(f"counts: expected {len(components)} non-negative integers (one per component, not all 0), received {counts}.")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(counts), dtype=np.uint32)
    parts, comp = [], []
    for j, (c, maps) in enumerate(zip(counts, components)):
        if c:
            parts.append(sample_cicy(manifold, c, seed=int(seeds[j]), chunk=chunk, progress=False, frame_maps=maps))
            comp.append(np.full(c, j, dtype=np.int64))
    keys = ("points", "omega_sq", "patch", "elim", "jacobian")
    cat = {k: np.concatenate([getattr(p, k) for p in parts]) for k in keys}
    n = sum(counts)
    used = [j for j, c in enumerate(counts) if c]
    tmp = CICYPointSet(cat["points"], np.ones(n), cat["omega_sq"], cat["patch"], cat["elim"], cat["jacobian"], manifold)
    w = cicy_mixture_weights(tmp, [components[j] for j in used], [counts[j] / n for j in used])
    return (CICYPointSet(cat["points"], w, cat["omega_sq"], cat["patch"], cat["elim"], cat["jacobian"], manifold,
                         sum(p.rejected_subspaces for p in parts)), np.concatenate(comp))


# ---- JAX: metrics from potentials, curvature, Euler characteristic --------------------------


def fs_potential_t(manifold: CompleteIntersection, t=None):
    """K_t(z) = Σ_r (t_r/π) log|z^{(r)}|² (JAX, z (..., N)): the ambient FS potential of class t."""
    import jax.numpy as jnp

    tt = np.ones(manifold.n_factors) if t is None else _check_t(t, manifold.n_factors)
    blocks = [np.asarray(b) for b in manifold.blocks]

    def K(z):
        out = 0.0
        for tr, b in zip(tt, blocks):
            zb = z[..., b]
            out = out + float(tr) / np.pi * jnp.log(jnp.sum(jnp.real(zb) ** 2 + jnp.imag(zb) ** 2, axis=-1))
        return out

    return K


def _small_solve(B, b):
    """B^{-1} b for a (K, K) JAX matrix: Cramer's rule for K ≤ 2 (batched LAPACK calls on 1×1/2×2 systems
    under vmap and nested jacfwd cost ~10× the whole curvature computation on CPU), LU otherwise."""
    import jax.numpy as jnp

    K = B.shape[0]
    if K == 1:
        return b / B[0, 0]
    if K == 2:
        det = B[0, 0] * B[1, 1] - B[0, 1] * B[1, 0]
        return jnp.stack([B[1, 1] * b[0] - B[0, 1] * b[1], B[0, 0] * b[1] - B[1, 0] * b[0]]) / det
    return jnp.linalg.solve(B, b)


def _cicy_point_fns(manifold: CompleteIntersection, potential):
    """JAX (z0 (N,), kept (dim,), elim (K,)) → metric G (dim, dim) and curvature (G, T (dim,)*4) of the
    Kähler potential ``potential`` pulled back through the implicit embedding x ↦ z(x) of the chart."""
    import jax
    import jax.numpy as jnp

    m = manifold.dim

    @jax.custom_jvp
    def zelim(x, z0, kept, elim):
        z = z0.at[kept].set(x)
        ze = z0[elim]
        for _ in range(2):  # Newton from the sampled value (exact at the base point already)
            z = z.at[elim].set(ze)
            q, dq = manifold.Q_and_dQ(z, xp=jnp)  # (K,), (K, N)
            ze = ze - _small_solve(dq[:, elim], q)
        return ze

    @zelim.defjvp
    def _zelim_jvp(primals, tangents):
        x, z0, kept, elim = primals
        ze = zelim(x, z0, kept, elim)
        z = z0.at[kept].set(x).at[elim].set(ze)
        dq = manifold.dQ(z, xp=jnp)
        return ze, -_small_solve(dq[:, elim], dq[:, kept] @ tangents[0])  # implicit function theorem

    def K_loc(xr, z0, kept, elim):
        x = xr[:m] + 1j * xr[m:]
        z = z0.at[kept].set(x).at[elim].set(zelim(x, z0, kept, elim))
        return jnp.real(potential(z))

    def G_fn(xr, z0, kept, elim):
        H = jax.jacfwd(jax.jacfwd(K_loc))(xr, z0, kept, elim)  # (2m, 2m) real Hessian
        return 0.25 * ((H[:m, :m] + H[m:, m:]) + 1j * (H[:m, m:] - H[m:, :m]))  # ∂_a ∂̄_b K

    def theta(xr, z0, kept, elim):
        G = G_fn(xr, z0, kept, elim)
        dG = jax.jacfwd(G_fn)(xr, z0, kept, elim)  # (m, m, 2m)
        dGc = 0.5 * (dG[..., :m] - 1j * dG[..., m:])  # ∂_c G [a, b, c]
        return jnp.einsum("abc,bd->cad", dGc, jnp.linalg.inv(G)), G  # θ_c = ∂_cG G^{-1}

    def xr_of(z0, kept):
        return jnp.concatenate([jnp.real(z0[kept]), jnp.imag(z0[kept])])

    def metric_fn(z0, kept, elim):
        return G_fn(xr_of(z0, kept), z0, kept, elim)

    def curvature_fn(z0, kept, elim):
        th = lambda xr: theta(xr, z0, kept, elim)  # noqa: E731
        dth, G = jax.jacfwd(th, has_aux=True)(xr_of(z0, kept))  # (m, m, m, 2m) [c, a, b, ·]
        dbar = 0.5 * (dth[..., :m] + 1j * dth[..., m:])  # ∂̄_d θ_c
        return G, -jnp.transpose(dbar, (1, 2, 0, 3))  # T[a, b, c, d]

    return metric_fn, curvature_fn


def _check_cps(ps):
    if not isinstance(ps, CICYPointSet):
        raise TypeError(f"ps: expected a CICYPointSet (from sample_cicy), received {type(ps).__name__}.")
    return ps


def cicy_metric_jax(ps: CICYPointSet, potential=None, *, t=None, batch: int = 4096) -> np.ndarray:
    r"""g_{ab̄} = ∂_a∂̄_b K(z(x)) (n, dim, dim) in each point's chart by JAX autodiff through the implicit
    embedding (independent of the closed-form Jacobian). ``potential``: real JAX K(z) of one point's
    homogeneous coordinates (N,); None → the FS potential of class ``t``."""
    import jax


    _check_cps(ps)
    if potential is not None and t is not None:
        raise ValueError("potential, t: t selects the FS potential; pass one of them, received both.")
    K = fs_potential_t(ps.manifold, t) if potential is None else potential
    if not callable(K):
        raise TypeError(f"potential: expected a JAX function of z (N,), received {type(K).__name__}.")
    metric_fn, _ = _cicy_point_fns(ps.manifold, K)
    return map_batched(jax.jit(jax.vmap(metric_fn)), ps.points, ps.kept, ps.elim, batch=positive_int("batch", batch))[0]


def make_cicy_curvature_fn(manifold: CompleteIntersection, potential=None, *, t=None, batch: int = 512):
    """Compile once; returns ``f(ps) -> Curvature`` for point sets of ``manifold`` (see :func:`cicy_curvature`)."""
    import jax
    import jax.numpy as jnp

    if not isinstance(manifold, CompleteIntersection):
        raise TypeError(f"manifold: expected a CompleteIntersection, received {type(manifold).__name__}.")
    if potential is not None and t is not None:
        raise ValueError("potential, t: t selects the FS potential; pass one of them, received both.")
    K = fs_potential_t(manifold, t) if potential is None else potential
    if not callable(K):
        raise TypeError(f"potential: expected a JAX function of z (N,), received {type(K).__name__}.")
    batch = positive_int("batch", batch)
    _, curvature_fn = _cicy_point_fns(manifold, K)
    m = manifold.dim
    eps = jnp.asarray(levi_civita(m))
    spec = chern_einsum(m)

    def per_point(z0, kept, elim):
        G, T = curvature_fn(z0, kept, elim)
        ric = jnp.einsum("aacd->cd", T)
        R = -jnp.real(jnp.trace(jnp.linalg.inv(G) @ ric))
        c = jnp.einsum(spec, eps, eps, eps, *[T[k] for k in range(m)]) / jnp.pi**m
        return G, jnp.real(jnp.linalg.det(G)), ric, R, jnp.real(c)

    fn = jax.jit(jax.vmap(per_point))

    def run(ps: CICYPointSet) -> Curvature:
        _check_cps(ps)
        if ps.manifold is not manifold and ps.manifold.spec()["cicy_coefficients"].tolist() != manifold.spec()["cicy_coefficients"].tolist():
            raise ValueError(f"ps: points of {ps.manifold.name} do not match {manifold.name}.")
        cat = map_batched(fn, ps.points, ps.kept, ps.elim, batch=batch)
        return Curvature(g=cat[0], det_g=cat[1], ricci=cat[2], ricci_scalar=cat[3], chern_top=cat[4])

    return run


def cicy_curvature(ps: CICYPointSet, potential=None, *, t=None, batch: int = 512):
    """Metric, Ricci form, Ricci scalar and top Chern density (a :class:`~ntkflow.manifolds.Curvature`)
    of the potential (None → FS of class ``t``) at every point, as :func:`ntkflow.manifolds.curvature`
    does for hypersurfaces: c_dim = π^{-dim} Σ ε ε ε Π_k T[k, b_k, c_k, d_k] (coefficient of d^{2dim}x).
    Compiles per call; reuse :func:`make_cicy_curvature_fn` across calls."""
    _check_cps(ps)
    return make_cicy_curvature_fn(ps.manifold, potential, t=t, batch=batch)(ps)


def cicy_euler_characteristic(ps: CICYPointSet, potential=None, *, t=None, curv=None, batch: int = 512) -> tuple[float, float]:
    """χ = ∫_X c_dim ≈ mean(w c_dim/|Ω|²)/dim! (value, batch-means standard error); topological, so the
    same for every Kähler metric (−162 bicubic, −128 tetraquadric, −144 P⁵[3,3])."""
    _check_cps(ps)
    if curv is None:
        curv = cicy_curvature(ps, potential, t=t, batch=batch)
    vals = ps.weights * curv.chern_top / ps.omega_sq / math.factorial(ps.dim)
    return mean_stderr(vals)


# ---- files: ntkflow CICY format and cymetric layout -------------------------------------------

CICY_FORMAT_TAG = "ntkflow-cicy-points"
CICY_FORMAT_VERSION = 1


def save_cicy_points(path, ps: CICYPointSet, *, format: str = "ntkflow", val_split: float = 0.1) -> str:
    """Write ``ps`` to ``path`` (.npz): ``"ntkflow"`` (points, weights, omega_sq, patch (n, m), elim (n, K),
    the ``cicy_*`` spec keys, format tag ``ntkflow-cicy-points``) or ``"cymetric"`` (cymetric's layout:
    X_train/X_val (n, 2N) = [Re z, Im z], y_train/y_val (n, 2) = [weights, |Ω|²], val_pullbacks
    (n_val, dim, N), plus the spec keys, which cymetric ignores). The hypersurface format is unchanged."""
    _check_cps(ps)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path = path + ".npz"
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path: the directory {directory!r} of {path!r} does not exist; create it first.")
    spec = ps.manifold.spec()
    if format == "ntkflow":
        return atomic_savez(path, points=ps.points, weights=ps.weights, omega_sq=ps.omega_sq, patch=ps.patch,
                            elim=ps.elim, format=np.array(CICY_FORMAT_TAG), version=np.array(CICY_FORMAT_VERSION), **spec)
    if format == "cymetric":
        if not (0.0 <= float(val_split) < 1.0):
            raise ValueError(f"val_split: must be in [0, 1), received {val_split!r}.")
        n = len(ps)
        t = n - int(np.floor(float(val_split) * n))
        X = np.concatenate([ps.points.real, ps.points.imag], axis=1)
        y = np.stack([ps.weights, ps.omega_sq], axis=1)
        return atomic_savez(path, X_train=X[:t], y_train=y[:t], X_val=X[t:], y_val=y[t:], val_pullbacks=ps.jacobian[t:],
                            format=np.array("cymetric+ntkflow-cicy-spec"), version=np.array(CICY_FORMAT_VERSION), **spec)
    raise ValueError(f"format: expected 'ntkflow' or 'cymetric', received {format!r}.")


def load_cicy_points(path, manifold: CompleteIntersection | None = None, *, check: bool = True) -> CICYPointSet:
    """Read a file of :func:`save_cicy_points` (either format) or a cymetric CICY ``dataset.npz`` (then pass
    ``manifold``). Charts and Jacobians are recomputed (stored patch/elim are reused); weights are kept as
    stored. With ``check``, points must satisfy |Q_j| ≤ 1e-8 Σ_m |c_{jm} z^{e_{jm}}|."""
    path = os.fspath(path)
    what = "CICY points"
    data = read_npz(path, what=what, hint="write one with save_cicy_points(path, sample_cicy(...)).")
    if "format" in data and "X_train" not in data:
        check_format(path, data["format"], CICY_FORMAT_TAG, what=what, versions=(CICY_FORMAT_VERSION,),
                     found_version=data.get("version"))
    stored = None
    if "cicy_exponents" in data:
        try:
            stored = CompleteIntersection.from_spec(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise NtkflowFileError(path, f"{what}: the manifold stored in {path!r} is invalid: {exc}") from None
    if manifold is None:
        if stored is None:
            raise ValueError(f"manifold: {path!r} carries no CICY spec (a plain cymetric dataset); pass "
                             "manifold=cicy_preset('bicubic') (or the CompleteIntersection it was made from).")
        manifold = stored
    N = manifold.n_coords
    patch = elim = None
    if "points" in data:
        pts = file_array(data, "points", path, what=what, shape=(None, N), kind="fc")
        weights = file_array(data, "weights", path, what=what, shape=(len(pts),), kind="f")
        patch = file_array(data, "patch", path, what=what, shape=(len(pts), manifold.n_factors), kind="iu")
        elim = file_array(data, "elim", path, what=what, shape=(len(pts), manifold.n_equations), kind="iu")
    elif "X_train" in data:
        parts_X, parts_y = [], []
        for xk, yk in (("X_train", "y_train"), ("X_val", "y_val")):
            if xk in data:
                X = file_array(data, xk, path, what=what, shape=(None, 2 * N), kind="f")
                parts_X.append(X)
                parts_y.append(file_array(data, yk, path, what=what, shape=(len(X), 2), kind="f"))
        X, y = np.concatenate(parts_X), np.concatenate(parts_y)
        pts, weights = X[:, :N] + 1j * X[:, N:], y[:, 0]
    else:
        raise NtkflowFileError(path, f"{what}: {path!r} has neither 'points' nor 'X_train'; found {sorted(data)}.")
    if weights.size and not np.all(weights > 0):
        raise NtkflowFileError(path, f"{what}: weights in {path!r} must be > 0; {int(np.sum(~(weights > 0)))} are not.")
    if check and len(pts):
        zn, _ = manifold.normalise(pts)
        res = np.max(np.abs(manifold.Q(zn)) / manifold.term_scale(zn), axis=1)
        if not np.all(res <= 1e-8):
            i = int(np.argmax(res))
            raise NtkflowFileError(path, f"{what}: {int(np.sum(~(res <= 1e-8)))} points in {path!r} are not on "
                                         f"{manifold.name} (largest relative |Q| = {res[i]:.2e} at row {i}); wrong manifold or psi?")
    return cicy_pointset_from_points(manifold, pts, weights, patch=patch, elim=elim)
