r"""Curvature of a Kähler metric on X by JAX autodiff in local coordinates.

Local coordinates. At a sampled point with patch p and eliminated coordinate e, the independent
variables are the kept coordinates x ∈ C^m (z_p = 1); z_e(x) is defined implicitly by Q(z(x)) = 0.
``_zelim`` is a ``jax.custom_jvp`` whose tangent rule is the implicit function theorem,
dz_e = −Σ_a (∂_aQ/∂_eQ) dx_a; JAX differentiates that rule again for higher derivatives, so every
derivative of z_e(x) is exact (no finite differences). Wirtinger derivatives come from real
derivatives in x = u + i v: ∂_a = (∂_{u_a} − i∂_{v_a})/2, ∂̄_b = (∂_{u_b} + i∂_{v_b})/2.

Metric. Either a Kähler potential K(z) (a real JAX function of the patch-normalised homogeneous
coordinates; default FS: K = (1/π) log|z|²), giving g_{ab̄} = ∂_a∂̄_b K(z(x)) = (P ∂∂̄K P†)_{ab̄}
— this is *the* pulled-back metric, since z(x) is holomorphic — or a function
``metric(z, P, omega) -> (m, m)`` of the point, the pullback Jacobian P (m, N) and Ω = 1/∂_eQ
(all differentiable functions of x), returning g_{ab̄} in the chart's coordinates.

Curvature (G[a, b] = g_{ab̄}):

- Chern connection θ_c = (∂_c G) G^{-1}, curvature Θ = ∂̄θ, components
  T[a, b, c, d] = −∂̄_d (θ_c)[a, b]  (Θ = T_{··cd} dx^c ∧ dx̄^d, End(TX)-valued (1,1)-form);
- Ricci form Ric_{cd̄} = Σ_a T[a, a, c, d] = −∂_c∂̄_d log det g;
- Ricci scalar (reference convention) R = g^{ab̄} ∂_a∂̄_b log det g = −tr(G^{-1} Ric);
- top Chern form c_m = det(iΘ/2π) = π^{-m} Σ_{b,c,d} ε_b ε_c ε_d Π_k T[k, b_k, c_k, d_k] · d^{2m}x,
  using dx^k ∧ dx̄^k = −2i d²x_k;  χ(X) = ∫ c_m (Gauss–Bonnet–Chern);
- Ricci measure ‖R‖ = Vol_K^{1/m}/Vol_CY · mean(w η |R|).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ntkflow._checks import positive_int

from .batching import map_points
from .geometry import integrate
from .pointset import PointSet

__all__ = ["Curvature", "curvature", "levi_civita", "chern_einsum", "metric_from_potential", "ricci_scalar", "ricci_measure", "euler_characteristic", "fs_potential"]


def fs_potential(z):
    """Fubini–Study Kähler potential K = (1/π) log Σ|z_I|² (t = 1); JAX, z (..., N)."""
    import jax.numpy as jnp

    return jnp.log(jnp.sum(jnp.real(z) ** 2 + jnp.imag(z) ** 2, axis=-1)) / jnp.pi


@dataclass(frozen=True)
class Curvature:
    """Per-point curvature data of one metric, in each point's chart.

    g (n, m, m) complex128 metric g_{ab̄}; det_g (n,) float64; ricci (n, m, m) Ricci form
    Ric_{ab̄} = −∂_a∂̄_b log det g; ricci_scalar (n,) R = g^{ab̄}∂_a∂̄_b log det g; chern_top (n,)
    float64 coefficient of d^{2m}x of the top Chern form c_m."""

    g: np.ndarray
    det_g: np.ndarray
    ricci: np.ndarray
    ricci_scalar: np.ndarray
    chern_top: np.ndarray


def levi_civita(m: int) -> np.ndarray:
    """ε (m,)*m: the Levi-Civita symbol, +1/−1 on even/odd permutations of range(m), 0 elsewhere."""
    eps = np.zeros((m,) * m)
    for perm in itertools.permutations(range(m)):
        inv = sum(1 for i in range(m) for j in range(i + 1, m) if perm[i] > perm[j])
        eps[perm] = -1.0 if inv % 2 else 1.0
    return eps


def chern_einsum(m: int) -> str:
    """The einsum spec of c_m ∝ Σ ε_b ε_c ε_d Π_k T[k, b_k, c_k, d_k] (operands ε, ε, ε, T[0], …, T[m−1])."""
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    B = [next(letters) for _ in range(m)]
    C = [next(letters) for _ in range(m)]
    D = [next(letters) for _ in range(m)]
    ins = ["".join(B), "".join(C), "".join(D)] + [B[k] + C[k] + D[k] for k in range(m)]
    return ",".join(ins) + "->"


def _build_point_fn(manifold, potential: Callable | None, metric: Callable | None):
    """JAX function (x0 (m,) complex, z0 (N,), kept (m,), elim ()) → (G (m,m), T (m,m,m,m))."""
    import jax
    import jax.numpy as jnp

    m, N = manifold.dim, manifold.n_coords

    @jax.custom_jvp
    def zelim(x, z0, kept, elim):
        z = z0.at[kept].set(x)
        ze = z0[elim]
        for _ in range(2):  # Newton from the sampled value (exact at the base point already)
            z = z.at[elim].set(ze)
            qv, dq = manifold.Q_and_dQ(z, xp=jnp)
            ze = ze - qv / dq[elim]
        return ze

    @zelim.defjvp
    def _zelim_jvp(primals, tangents):
        x, z0, kept, elim = primals
        dx = tangents[0]
        ze = zelim(x, z0, kept, elim)
        z = z0.at[kept].set(x).at[elim].set(ze)
        dq = manifold.dQ(z, xp=jnp)
        return ze, -jnp.dot(dq[kept], dx) / dq[elim]  # implicit function theorem

    def embed(xr, z0, kept, elim):
        x = xr[:m] + 1j * xr[m:]
        ze = zelim(x, z0, kept, elim)
        return x, z0.at[kept].set(x).at[elim].set(ze)

    if metric is None:
        K = fs_potential if potential is None else potential

        def K_loc(xr, z0, kept, elim):
            return jnp.real(K(embed(xr, z0, kept, elim)[1]))

        def G_fn(xr, z0, kept, elim):
            H = jax.jacfwd(jax.jacfwd(K_loc))(xr, z0, kept, elim)  # (2m, 2m) real Hessian
            return 0.25 * ((H[:m, :m] + H[m:, m:]) + 1j * (H[:m, m:] - H[m:, :m]))
    else:

        def G_fn(xr, z0, kept, elim):
            x, z = embed(xr, z0, kept, elim)
            dq = manifold.dQ(z, xp=jnp)
            omega = 1.0 / dq[elim]
            P = jnp.zeros((m, N), dtype=z.dtype).at[jnp.arange(m), kept].set(1.0)
            P = P.at[:, elim].set(-dq[kept] * omega)
            return jnp.asarray(metric(z, P, omega)).reshape(m, m)

    def theta(xr, z0, kept, elim):
        G = G_fn(xr, z0, kept, elim)
        dG = jax.jacfwd(G_fn)(xr, z0, kept, elim)  # (m, m, 2m)
        dGc = 0.5 * (dG[..., :m] - 1j * dG[..., m:])  # ∂_c G  (m, m, m) [a, b, c]
        return jnp.einsum("abc,bd->cad", dGc, jnp.linalg.inv(G)), G  # θ_c = ∂_cG G^{-1}

    def metric_fn(z0, kept, elim):
        xr0 = jnp.concatenate([jnp.real(z0[kept]), jnp.imag(z0[kept])])
        return G_fn(xr0, z0, kept, elim)

    def point_fn(z0, kept, elim):
        xr0 = jnp.concatenate([jnp.real(z0[kept]), jnp.imag(z0[kept])])
        th_fn = lambda xr: theta(xr, z0, kept, elim)  # noqa: E731
        dth, _ = jax.jacfwd(th_fn, has_aux=True)(xr0)  # (m, m, m, 2m) [c, a, b, ·]
        _, G = th_fn(xr0)
        dbar = 0.5 * (dth[..., :m] + 1j * dth[..., m:])  # ∂̄_d θ_c [c, a, b, d]
        T = -jnp.transpose(dbar, (1, 2, 0, 3))  # [a, b, c, d]
        return G, T

    return point_fn, metric_fn


def metric_from_potential(ps: PointSet, potential: Callable | None = None, *, batch: int = 4096) -> np.ndarray:
    """Pulled-back metric g_{ab̄} = ∂_a∂̄_b K(z(x)) = (P ∂∂̄K P†)_{ab̄} (n, m, m) complex128 in each point's
    chart, for a real JAX potential K(z) of one point's homogeneous coordinates (None → FS).
    Second derivatives only (much cheaper than :func:`curvature`)."""
    import jax

    if not isinstance(ps, PointSet):
        raise TypeError(f"ps: expected a PointSet, received {type(ps).__name__}.")
    if potential is not None and not callable(potential):
        raise TypeError(f"potential: expected a JAX function, received {type(potential).__name__}.")
    _, metric_fn = _build_point_fn(ps.manifold, potential, None)
    return map_points(jax.jit(jax.vmap(metric_fn)), ps, positive_int("batch", batch))[0]


def make_curvature_fn(manifold, potential: Callable | None = None, metric: Callable | None = None, batch: int = 1024):
    """Compile once; returns ``f(ps) -> Curvature`` (reuse it to avoid recompiling across calls)."""
    import jax
    import jax.numpy as jnp

    if potential is not None and metric is not None:
        raise ValueError("potential, metric: pass one of them (or neither for Fubini–Study), received both.")
    for nm, fn in (("potential", potential), ("metric", metric)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{nm}: expected a JAX function, received {type(fn).__name__}.")
    batch = positive_int("batch", batch)
    m = manifold.dim
    point_fn, _ = _build_point_fn(manifold, potential, metric)
    eps = jnp.asarray(levi_civita(m))
    spec = chern_einsum(m)

    def per_point(z0, kept, elim):
        G, T = point_fn(z0, kept, elim)
        Ginv = jnp.linalg.inv(G)
        ric = jnp.einsum("aacd->cd", T)
        R = -jnp.real(jnp.trace(Ginv @ ric))
        c = jnp.einsum(spec, eps, eps, eps, *[T[k] for k in range(m)]) / jnp.pi**m
        return G, jnp.real(jnp.linalg.det(G)), ric, R, jnp.real(c)

    fn = jax.jit(jax.vmap(per_point))

    def run(ps: PointSet) -> Curvature:
        if not isinstance(ps, PointSet):
            raise TypeError(f"ps: expected a PointSet, received {type(ps).__name__}.")
        if ps.manifold.n_coords != manifold.n_coords:
            raise ValueError(f"ps: points of {ps.manifold.name} do not match {manifold.name}.")
        cat = map_points(fn, ps, batch)
        return Curvature(g=cat[0], det_g=cat[1], ricci=cat[2], ricci_scalar=cat[3], chern_top=cat[4])

    return run


def curvature(ps: PointSet, potential: Callable | None = None, *, metric: Callable | None = None, batch: int = 1024) -> Curvature:
    """Metric, Ricci form, Ricci scalar and top Chern density at every point (see module docstring).

    ``potential``: K(z) real JAX function of the homogeneous coordinates (None → Fubini–Study);
    ``metric``: alternatively g(z, P, Ω) → (m, m) in the chart. Compiles a JAX function per call."""
    return make_curvature_fn(ps.manifold, potential, metric, batch)(ps)


def ricci_scalar(ps: PointSet, potential: Callable | None = None, *, metric: Callable | None = None, batch: int = 1024) -> np.ndarray:
    """R = g^{ab̄} ∂_a∂̄_b log det g (n,) for the metric of ``potential`` (or ``metric``)."""
    return curvature(ps, potential, metric=metric, batch=batch).ricci_scalar


def ricci_measure(ps: PointSet, potential: Callable | None = None, *, metric: Callable | None = None,
                  curv: Curvature | None = None, batch: int = 1024) -> float:
    """‖R‖ = Vol_K^{1/m}/Vol_CY · mean(w η |R|), η = det g/|Ω|² (pass ``curv`` to reuse a computation)."""
    if curv is None:
        curv = curvature(ps, potential, metric=metric, batch=batch)
    w, e = ps.weights, curv.det_g / ps.omega_sq
    vol_k, vol_cy = float(np.mean(w * e)), float(np.mean(w))
    return vol_k ** (1.0 / ps.dim) / vol_cy * float(np.mean(w * e * np.abs(curv.ricci_scalar)))


def euler_characteristic(ps: PointSet, potential: Callable | None = None, *, metric: Callable | None = None,
                         curv: Curvature | None = None, batch: int = 1024) -> tuple[float, float]:
    """χ = ∫_X c_m ≈ mean(w c_m/|Ω|²)/m!: (value, standard error by batch means).

    Topological: the same for every Kähler metric on X (−200 quintic, 24 K3, 0 torus)."""
    if curv is None:
        curv = curvature(ps, potential, metric=metric, batch=batch)
    return integrate(ps, curv.chern_top)


