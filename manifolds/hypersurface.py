"""Calabi–Yau hypersurfaces X = {Q = 0} ⊂ P^n given by monomials and coefficients.

The design keeps a small abstract interface, :class:`Manifold`, that any projective variety with
sampled points and local charts implements (a complete intersection would be another final class
with several equations); :class:`Hypersurface` is the one concrete implementation today.

Polynomial evaluation is written once against an array namespace ``xp`` (NumPy or ``jax.numpy``):
integer powers are built by repeated multiplication (never ``z ** e`` through ``exp(e log z)``), so
the same code is exact at z = 0, fast in NumPy and differentiable in JAX.
"""
from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkflow._checks import finite_array

__all__ = ["Manifold", "Hypersurface", "SingularityWarning", "SingularManifoldError"]


class SingularityWarning(UserWarning):
    """A member of a family is (numerically) close to singular; weights become heavy-tailed."""


class SingularManifoldError(ValueError):
    """The hypersurface has a point where Q = dQ = 0: it is not a smooth Calabi–Yau."""


def _xp_of(z) -> Any:
    """NumPy for NumPy input, ``jax.numpy`` for JAX arrays and tracers."""
    if isinstance(z, np.ndarray) or np.isscalar(z):
        return np
    try:
        import jax

        if isinstance(z, jax.Array):
            import jax.numpy as jnp

            return jnp
    except ImportError:  # pragma: no cover - jax is a hard dependency
        pass
    return np


class Manifold(abc.ABC):
    """Abstract interface of a compact Kähler manifold embedded in projective space.

    What the sampler, the geometry and the CY-flow code rely on:

    - ``n_coords``: number N of homogeneous coordinates of the ambient P^{N-1};
    - ``dim``: complex dimension of X;
    - ``intersection_number``: ∫_X J^dim for the hyperplane class J at Kähler modulus t = 1;
    - ``Q(z)`` / ``dQ(z)``: the defining equation(s) and their gradients, vectorised over leading
      axes, NumPy or JAX (the namespace is picked from the input);
    - ``spec()``: a dict of plain arrays that rebuilds the manifold (for files).
    """

    @property
    @abc.abstractmethod
    def n_coords(self) -> int: ...

    @property
    @abc.abstractmethod
    def dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def intersection_number(self) -> float: ...

    @abc.abstractmethod
    def Q(self, z, xp=None): ...

    @abc.abstractmethod
    def dQ(self, z, xp=None): ...

    @abc.abstractmethod
    def spec(self) -> dict: ...


@dataclass(frozen=True, eq=False)
class Hypersurface(Manifold):
    r"""A hypersurface X = {Q = 0} ⊂ P^{N-1} of degree N (the Calabi–Yau condition).

    .. math::
        Q(z) = \sum_m c_m \prod_{j=0}^{N-1} z_j^{e_{mj}}, \qquad \sum_j e_{mj} = N \ \ \forall m.

    Parameters
    ----------
    exponents : (n_mon, N) int
        Non-negative exponents; every row must sum to N (homogeneous of degree N = n + 1 on P^n).
    coefficients : (n_mon,) complex
        Coefficients c_m (finite, not all zero).
    name : str
        Label carried into files and reports.
    psi : complex or None
        Family parameter for presets (e.g. the Dwork ψ); metadata only, not used in the maths.
    symmetric_group_hint : str or None
        ``"fermat"`` when Q = a Σ z_j^N (symmetric group S_N ⋉ (Z_N)^{N-1} acts), ``"dwork"`` for
        Σ z_j^N − Nψ Π z_j with ψ ≠ 0 (S_N ⋉ {phases in Z_N^N with product 1}/diagonal), ``None``
        otherwise. Detected automatically when not given; the CY code may use it to choose invariant
        bases. It is a hint about the *equation*, not a promise about the sampled points.

    Construction validates: shapes, integrality, homogeneity of degree N, N ≥ 3, duplicate monomials,
    and exactly detectable singularities (a coordinate vertex e_j where Q and dQ vanish; the Fermat
    + product family Σ a_j z_j^N + b Π z_j at (−b/N)^N = Π a_j, e.g. the conifold ψ⁵ = 1).
    Other singular points are searched for numerically by :meth:`singular_points` (Gauss–Newton on
    ∇Q = 0; :func:`~ntkflow.manifolds.sample` runs it once per instance and refuses singular X).
    """

    exponents: np.ndarray  # (n_mon, N) int64
    coefficients: np.ndarray  # (n_mon,) complex128
    name: str = "hypersurface"
    psi: complex | None = None
    symmetric_group_hint: str | None = None
    _plan: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        e = np.asarray(self.exponents)
        if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
            raise ValueError(
                f"exponents: expected an (n_monomials, N) integer array, received shape {e.shape}; "
                "e.g. 5*np.eye(5, dtype=int) for the Fermat quintic."
            )
        if e.dtype.kind not in "iu":
            if e.dtype.kind == "f" and np.all(np.isfinite(e)) and np.all(e == np.round(e)):
                e = e.astype(np.int64)
            else:
                raise TypeError(f"exponents: expected integers, received dtype {e.dtype}; cast with .astype(int).")
        e = e.astype(np.int64)
        if np.any(e < 0):
            raise ValueError(f"exponents: must be >= 0, received min {e.min()}; Q must be a polynomial.")
        n_mon, N = e.shape
        if N < 3:
            raise ValueError(
                f"exponents: need at least 3 homogeneous coordinates (a curve in P^2), received N = {N}."
            )
        deg = e.sum(axis=1)
        if np.any(deg != N):
            bad = int(np.flatnonzero(deg != N)[0])
            raise ValueError(
                f"exponents: every monomial must have degree N = {N} (the Calabi–Yau condition for a "
                f"hypersurface in P^{N - 1}), but row {bad} {e[bad].tolist()} has degree {int(deg[bad])}; "
                f"use degree-{N} monomials, or {int(deg[bad]) + 0} homogeneous coordinates for degree {int(deg[bad])}."
            )
        if len({tuple(r) for r in e.tolist()}) != n_mon:
            raise ValueError("exponents: contains duplicate monomials; merge them by adding their coefficients.")
        c = finite_array("coefficients", self.coefficients, ndim=1).astype(np.complex128)
        if c.shape[0] != n_mon:
            raise ValueError(
                f"coefficients: expected {n_mon} entries (one per monomial row of exponents), received {c.shape[0]}."
            )
        if not np.any(c != 0):
            raise ValueError("coefficients: all zero; Q must be a non-zero polynomial.")
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name: expected a non-empty string, received {self.name!r}.")
        psi = None if self.psi is None else complex(self.psi)
        keep = c != 0
        e, c = e[keep], c[keep]
        e.setflags(write=False)
        c.setflags(write=False)
        object.__setattr__(self, "exponents", e)
        object.__setattr__(self, "coefficients", c)
        object.__setattr__(self, "psi", psi)
        object.__setattr__(self, "_plan", _make_plan(e, c))
        if self.symmetric_group_hint is None:
            object.__setattr__(self, "symmetric_group_hint", _detect_symmetry(e, c))
        _check_exact_singularities(self)

    # ---- Manifold interface ---------------------------------------------------------------
    @property
    def n_coords(self) -> int:
        """N = n + 1 homogeneous coordinates of P^n."""
        return int(self.exponents.shape[1])

    @property
    def dim(self) -> int:
        """Complex dimension of X = N − 2."""
        return self.n_coords - 2

    @property
    def degree(self) -> int:
        """Degree of Q (= N by the Calabi–Yau condition)."""
        return self.n_coords

    @property
    def intersection_number(self) -> float:
        r"""∫_X J^dim = deg Q at t = 1 (J = FS Kähler class of the hyperplane): 5 on the quintic."""
        return float(self.degree)

    def Q(self, z, xp=None):
        """Q(z): (..., N) complex → (...,) complex. NumPy or JAX by input type (or ``xp``)."""
        xp = _xp_of(z) if xp is None else xp
        return _evaluate(self._plan, xp.asarray(z), xp, want_q=True, want_dq=False)[0]

    def dQ(self, z, xp=None):
        """∂Q/∂z_j: (..., N) complex → (..., N) complex."""
        xp = _xp_of(z) if xp is None else xp
        return _evaluate(self._plan, xp.asarray(z), xp, want_q=False, want_dq=True)[1]

    def Q_and_dQ(self, z, xp=None):
        """(Q, dQ) sharing one table of powers: (...,), (..., N)."""
        xp = _xp_of(z) if xp is None else xp
        return _evaluate(self._plan, xp.asarray(z), xp, want_q=True, want_dq=True)

    def Q_jax(self, z):
        """Q for JAX (jit/vmap/grad-safe): (..., N) → (...,)."""
        import jax.numpy as jnp

        return self.Q(z, xp=jnp)

    def dQ_jax(self, z):
        """dQ for JAX (jit/vmap/grad-safe): (..., N) → (..., N)."""
        import jax.numpy as jnp

        return self.dQ(z, xp=jnp)

    def term_scale(self, z):
        """Σ_m |c_m z^{e_m}|: the scale against which |Q(z)| is 'zero' (NumPy). (...,) float."""
        z = np.asarray(z)
        mon = np.prod(np.abs(z)[..., None, :] ** self.exponents, axis=-1)  # (..., n_mon)
        return mon @ np.abs(self.coefficients)

    def singular_points(self, n_starts: int = 128, seed: int = 0, iters: int = 40, tol: float = 1e-9) -> np.ndarray:
        r"""Search for singular points of X (∇Q = 0; then Q = 0 by Euler's identity) numerically.

        Gauss–Newton (Levenberg–Marquardt damped) on the N equations ∂_jQ(z) = 0 in the N−1 free
        coordinates of the patch of the largest coordinate, from ``n_starts`` random starts
        (``np.random.default_rng(seed)``); the Hessian of Q is taken by central differences of the
        exact gradient (it only steers the iteration; the accepted points satisfy the exact test)
        |∇Q(z)| ≤ tol · Σ|c_m| at |z|_∞ = 1. Returns the (k, N) points found, k = 0 when none was.
        A heuristic for equations outside the families checked exactly at construction: it can
        miss singular points, but never reports a smooth point. Results are cached per instance."""
        key = (int(n_starts), int(seed), int(iters), float(tol))
        cache = self._plan.setdefault("singular_cache", {})
        if key not in cache:
            cache[key] = _search_singular(self, *key)
        return cache[key].copy()

    def spec(self) -> dict:
        """Plain arrays that rebuild this manifold with :meth:`from_spec` (saved in files)."""
        return {
            "exponents": np.array(self.exponents, dtype=np.int64),
            "coefficients": np.array(self.coefficients, dtype=np.complex128),
            "name": np.array(self.name),
            "psi": np.array(np.nan + 0j if self.psi is None else self.psi, dtype=np.complex128),
        }

    @classmethod
    def from_spec(cls, spec) -> "Hypersurface":
        psi = complex(np.asarray(spec["psi"])) if "psi" in spec else complex("nan")
        return cls(
            np.asarray(spec["exponents"]),
            np.asarray(spec["coefficients"]),
            name=str(np.asarray(spec["name"])),
            psi=None if np.isnan(psi.real) else psi,
        )

    def __eq__(self, other):
        if not isinstance(other, Hypersurface):
            return NotImplemented
        a = sorted(zip(map(tuple, self.exponents.tolist()), self.coefficients.tolist()))
        b = sorted(zip(map(tuple, other.exponents.tolist()), other.coefficients.tolist()))
        return a == b and self.name == other.name

    def __hash__(self):
        return hash((self.name, tuple(sorted(map(tuple, self.exponents.tolist())))))

    def __repr__(self):
        return (
            f"Hypersurface(name={self.name!r}, N={self.n_coords}, dim={self.dim}, "
            f"monomials={len(self.coefficients)}, psi={self.psi}, hint={self.symmetric_group_hint!r})"
        )


# ---- evaluation plan -----------------------------------------------------------------------


def _make_plan(e: np.ndarray, c: np.ndarray) -> dict:
    """Split Q into a diagonal part Σ_j a_j z_j^N (one multiply-add per coordinate) and the rest."""
    n_mon, N = e.shape
    diag = np.zeros(N, dtype=np.complex128)
    other = []
    for row, coef in zip(e, c):
        nz = np.flatnonzero(row)
        if len(nz) == 1:
            diag[nz[0]] += coef
        else:
            other.append((complex(coef), tuple((int(j), int(row[j])) for j in nz)))
    max_pow = max([N] + [k for _, f in other for _, k in f])
    return {"N": N, "diag": diag, "has_diag": bool(np.any(diag != 0)), "other": tuple(other), "max_pow": max_pow}


def _evaluate(plan: dict, z, xp, *, want_q: bool, want_dq: bool):
    """Q (...,) and dQ (..., N) at z (..., N) with the plan of :func:`_make_plan`."""
    N = plan["N"]
    if z.shape[-1] != N:
        raise ValueError(f"z: expected last axis of length N = {N}, received shape {tuple(z.shape)}.")
    # pw[k] = z**k for k = 1..max_pow by repeated multiplication (exact at 0, JAX-differentiable)
    pw = [None, z]
    for _ in range(2, plan["max_pow"] + 1):
        pw.append(pw[-1] * z)
    q = dq = None
    if plan["has_diag"]:
        a = xp.asarray(plan["diag"])
        if want_q:
            q = xp.sum(pw[N] * a, axis=-1)
        if want_dq:
            dq = (N * a) * pw[N - 1]
    cols = None
    for coef, factors in plan["other"]:
        vals = [pw[k][..., j] for j, k in factors]
        if want_q:
            term = coef * _prod(vals)
            q = term if q is None else q + term
        if want_dq:
            if cols is None:
                cols = [[] for _ in range(N)]
            for i, (j, k) in enumerate(factors):
                rest = vals[:i] + vals[i + 1:]
                lead = pw[k - 1][..., j] if k > 1 else None
                parts = rest + ([lead] if lead is not None else [])
                cols[j].append((coef * k) * _prod(parts) if parts else (coef * k) * xp.ones_like(z[..., 0]))
    if want_dq and cols is not None:
        extra = [sum(cl[1:], cl[0]) if cl else xp.zeros_like(z[..., 0]) for cl in cols]
        extra = xp.stack(extra, axis=-1)
        dq = extra if dq is None else dq + extra
    if want_q and q is None:
        q = xp.zeros_like(z[..., 0])
    if want_dq and dq is None:
        dq = xp.zeros_like(z)
    return q, dq


def _search_singular(m: "Hypersurface", n_starts: int, seed: int, iters: int, tol: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    N = m.n_coords
    scale = float(np.abs(m.coefficients).sum())
    z = rng.standard_normal((n_starts, N)) + 1j * rng.standard_normal((n_starts, N))
    lam = np.full(n_starts, 1e-3)
    h = 1e-6
    rows = np.arange(n_starts)
    eye = np.eye(N - 1)

    def normalise(z):
        p = np.argmax(np.abs(z), axis=1)
        z = z / z[rows, p][:, None]
        z[rows, p] = 1.0
        return z, p

    z, p = normalise(z)
    F = m.dQ(z)
    cost = np.sum(np.abs(F) ** 2, axis=1)
    for _ in range(iters):
        free = np.array([[j for j in range(N) if j != pi] for pi in p])  # (S, N-1) free coordinates
        dz = np.zeros((N - 1, n_starts, N), dtype=np.complex128)
        dz[np.arange(N - 1)[:, None], rows[None, :], free.T] = h
        dF = m.dQ(np.concatenate([z[None] + dz, z[None] - dz]))  # one call: (2(N-1), S, N)
        Jc = np.moveaxis((dF[: N - 1] - dF[N - 1:]) / (2 * h), 0, 2)  # (S, N, N-1)
        JH = np.conj(np.swapaxes(Jc, 1, 2))
        A = JH @ Jc + lam[:, None, None] * eye
        b = -np.einsum("sij,sj->si", JH, F)
        try:
            delta = np.linalg.solve(A, b[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        znew = z.copy()
        znew[rows[:, None], free] += delta
        znew, pnew = normalise(znew)
        Fnew = m.dQ(znew)
        cnew = np.sum(np.abs(Fnew) ** 2, axis=1)
        ok = np.isfinite(cnew) & (cnew < cost)
        z[ok], p[ok], F[ok], cost[ok] = znew[ok], pnew[ok], Fnew[ok], cnew[ok]
        lam = np.where(ok, lam * 0.3, lam * 10.0)
    found = np.sqrt(cost) <= tol * scale
    return z[found]


def _prod(vals):
    out = vals[0]
    for v in vals[1:]:
        out = out * v
    return out


def _detect_symmetry(e: np.ndarray, c: np.ndarray) -> str | None:
    n_mon, N = e.shape
    diag_rows = [i for i in range(n_mon) if np.count_nonzero(e[i]) == 1]
    if len(diag_rows) != N or len({int(np.flatnonzero(e[i])[0]) for i in diag_rows}) != N:
        return None
    a = c[diag_rows]
    if not np.allclose(a, a[0], rtol=1e-14, atol=0):
        return None
    if n_mon == N:
        return "fermat"
    if n_mon == N + 1:
        prod_rows = [i for i in range(n_mon) if i not in diag_rows]
        if np.all(e[prod_rows[0]] == 1):
            return "dwork"
    return None


def _check_exact_singularities(m: Hypersurface) -> None:
    """Raise for singular points that can be found exactly; warn when a family member is close."""
    e, c, N = m.exponents, m.coefficients, m.n_coords
    rows = {tuple(r): coef for r, coef in zip(e.tolist(), c.tolist())}
    # coordinate vertices e_j: Q(e_j) = coeff of z_j^N; dQ_k(e_j) = coeff of z_j^(N-1) z_k
    for j in range(N):
        vert = [0] * N
        vert[j] = N
        if tuple(vert) in rows:
            continue
        grad_zero = True
        for k in range(N):
            if k == j:
                continue
            r = [0] * N
            r[j], r[k] = N - 1, 1
            if tuple(r) in rows:
                grad_zero = False
                break
        if grad_zero:
            raise SingularManifoldError(
                f"{m.name}: singular at the coordinate point z = e_{j} (no z_{j}^{N} term and no "
                f"z_{j}^{N - 1} z_k term, so Q = dQ = 0 there); add a z_{j}^{N} monomial."
            )
    # Fermat + product family: Σ a_j z_j^N + b Π z_j, singular iff (−b/N)^N = Π a_j
    diag = [rows.get(tuple(N if i == j else 0 for i in range(N))) for j in range(N)]
    prod = rows.get(tuple([1] * N))
    if all(a is not None for a in diag) and prod is not None and len(rows) == N + 1:
        lhs = (-prod / N) ** N
        rhs = complex(np.prod(np.asarray(diag)))
        gap = abs(lhs - rhs) / max(abs(rhs), 1e-300)
        if gap < 1e-12:
            raise SingularManifoldError(
                f"{m.name}: singular member of the family Σ a_j z_j^{N} + b Π z_j: (−b/{N})^{N} = Π a_j "
                f"(the conifold point, e.g. ψ^{N} = 1 for the Dwork family; received psi={m.psi}); "
                f"choose a parameter with ψ^{N} ≠ 1."
            )
        if gap < 1e-3:
            warnings.warn(
                f"{m.name}: within {gap:.1e} of the conifold ((−b/N)^N = Π a_j, ψ^{N} = 1); Monte-Carlo "
                "weights will be heavy-tailed near the nodes.",
                SingularityWarning,
                stacklevel=3,
            )
