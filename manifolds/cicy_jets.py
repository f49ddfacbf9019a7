r"""Curvature on complete intersections from 2-jets: no autodiff through the sections or the implicit embedding.

The potentials of the CICY job are functions of a few sesquilinear forms in holomorphic vectors,

    K = Φ(A_1, …, A_r),   A_i(x) = u_i(x)ᵀ H_i conj(u_i(x)),

u = the sections s(z(x)) (``H`` the model's matrix) or one factor's coordinates z^(a)(x) (H = I), x the chart
coordinates of X (``ps.jacobian``). The Chern curvature needs the derivatives ∂^α∂̄^β K with |α|, |β| ≤ 2 at
each point, and these depend on u only through its holomorphic 2-jet: with the Taylor vectors
c_p (p over the P = 1 + d + d(d+1)/2 monomials h^p of degree ≤ 2 in h ∈ C^d) of u(x + h),

    A(x + h) ≐ Σ_pq M_pq h^p conj(h)^q,   M = C H C†   (P × P per point),

exact for every derivative of holomorphic and antiholomorphic order ≤ 2. So each point costs one product
with H (sparse when H is) for the P × P Gram, and the 4th derivatives come from JAX autodiff of a polynomial
in 2d variables (h and an independent h̄: the potential is real-analytic) instead of autodiff through
monomials of degree k in N coordinates (:func:`ntkflow.manifolds.cicy.cicy_curvature`, the reference the
tests compare with, ≈ 16 s a point for a bicubic k = 9 model on 2 cores).

The jets of the embedding (``embedding_derivatives``) come from differentiating Q_j(z(x)) = 0 twice; the
curvature from (g, ∂g, ∂̄∂g) as in :mod:`ntkflow.manifolds.curvature`: T = −∂̄_d∂_c g g⁻¹ + ∂_c g g⁻¹ ∂̄_d g g⁻¹,
Ric = tr T, c_dim = π^{−dim} ε ε ε T ⋯ T.
"""
from __future__ import annotations

import numpy as np

from ntkflow._checks import positive_int
from ntkflow.manifolds.curvature import Curvature, chern_einsum, levi_civita
from ntkflow.manifolds.sections import monomial_sections

__all__ = ["q_hessian", "embedding_derivatives", "taylor_vectors", "section_jets", "jet_grams",
           "make_jet_curvature"]


def _power_table(z, kmax: int) -> np.ndarray:
    """(M, kmax+1, N): z_n^p for p = 0 … kmax by repeated products (integer powers, exact at 0)."""
    table = [np.ones_like(z), z]
    for _ in range(2, kmax + 1):
        table.append(table[-1] * z)
    return np.stack(table[: kmax + 1], axis=1)


def q_hessian(manifold, z) -> np.ndarray:
    """∂_I∂_J Q_j (M, K, N, N) complex at z (M, N), from the monomials: ∂_I∂_J z^e = e_I(e_J − δ_IJ) z^{e−e_I−e_J}
    (integer powers from a table of repeated products, exact at 0)."""
    z = np.asarray(z, dtype=np.complex128)
    M, N = z.shape
    table = _power_table(z, max(int(e.max()) for e, _ in manifold.polynomials))  # (M, kmax+1, N)
    cols = np.arange(N)
    out = np.zeros((M, manifold.n_equations, N, N), dtype=np.complex128)
    for j, (e, c) in enumerate(manifold.polynomials):
        for I in range(N):
            for J in range(I, N):
                coef = c * e[:, I] * (e[:, J] - (I == J))  # (n_mon,)
                keep = coef != 0
                if not np.any(keep):
                    continue
                ee = e[keep].copy()
                ee[:, I] -= 1
                ee[:, J] -= 1
                vals = np.prod(table[:, ee, cols], axis=2) @ coef[keep]  # (M,)
                out[:, j, I, J] = vals
                out[:, j, J, I] = vals
    return out


def embedding_derivatives(ps):
    """(Z1 (M, dim, N), Z2 (M, dim, dim, N)): ∂_a z_I and ∂_a∂_c z_I of the chart embedding x ↦ z(x).

    Z1 is the pullback Jacobian; differentiating Q(z(x)) = 0 twice gives on the eliminated coordinates E
    B Z2[c, a, E] = −Σ_IJ ∂_I∂_J Q Z1[a, I] Z1[c, J] (B = ∂Q/∂z_E), and Z2 = 0 elsewhere."""
    m = ps.manifold
    Z1 = np.asarray(ps.jacobian)
    M, dim, N = Z1.shape
    H = q_hessian(m, ps.points)  # (M, K, N, N)
    dq = m.dQ(ps.points)  # (M, K, N)
    B = np.take_along_axis(dq, ps.elim[:, None, :], axis=2)  # (M, K, K)
    rhs = np.einsum("mkij,mai,mcj->mcak", H, Z1, Z1)  # (M, dim, dim, K)
    sol = -np.linalg.solve(B[:, None, None], rhs[..., None])[..., 0]  # (M, dim, dim, K)
    Z2 = np.zeros((M, dim, dim, N), dtype=np.complex128)
    rows = np.arange(M)
    for k in range(m.n_equations):
        Z2[rows, :, :, ps.elim[:, k]] = sol[:, :, :, k]
    return Z1, Z2


def _taylor_index(dim: int):
    """The monomials h^p of degree ≤ 2 in d variables, in the order of :func:`taylor_vectors`: (), (a,), (a, c) a ≤ c."""
    return [()] + [(a,) for a in range(dim)] + [(a, c) for a in range(dim) for c in range(a, dim)]


def taylor_vectors(f, f1, f2) -> np.ndarray:
    """C (M, P, L): the coefficients of h^p in f(x + h) = f + Σ_a h_a ∂_a f + ½ Σ_ac h_a h_c ∂_a∂_c f, from the
    values f (M, L), first derivatives f1 (M, d, L) and second derivatives f2 (M, d, d, L) (symmetric)."""
    d = f1.shape[1]
    rows = [f] + [f1[:, a] for a in range(d)]
    rows += [0.5 * f2[:, a, a] if a == c else f2[:, a, c] for a in range(d) for c in range(a, d)]
    return np.stack(rows, axis=1)


def section_jets(z, Z1, Z2, exponents):
    """(s (M, L), S1 (M, d, L), S2 (M, d, d, L)): the monomials s_l = z^{e_l} and their first and second derivatives
    along the chart x ↦ z(x) (Z1 = ∂z, Z2 = ∂∂z): S2[c, a] = Σ_IJ ∂_I∂_J s Z1[c, I] Z1[a, J] + Σ_I ∂_I s Z2[c, a, I],
    with ∂_I∂_J z^e = e_I(e_J − δ_IJ) z^{e − e_I − e_J} from a table of integer powers (exact at z_I = 0)."""
    e = np.asarray(exponents, dtype=np.int64)
    z = np.asarray(z, dtype=np.complex128)
    s, ds = monomial_sections(z, e)  # (M, L), (M, L, N)
    S1 = np.einsum("mai,mli->mal", Z1, ds)
    S2 = np.einsum("mcai,mli->mcal", Z2, ds)
    M, N = z.shape
    table = _power_table(z, max(int(e.max()) if e.size else 0, 1))  # (M, kmax+1, N): z_n^p
    cols = np.arange(N)
    P0 = table[:, e, cols]  # (M, L, N): z_n^{e_ln}
    P1 = table[:, np.maximum(e - 1, 0), cols]
    P2 = table[:, np.maximum(e - 2, 0), cols]
    for I in range(N):
        for J in range(I, N):
            coef = e[:, I] * (e[:, J] - (I == J))  # (L,)
            if not np.any(coef):
                continue
            rest = [n for n in range(N) if n not in (I, J)]
            val = np.prod(P0[:, :, rest], axis=2) * (P2[:, :, I] if I == J else P1[:, :, I] * P1[:, :, J])
            val = val * coef[None, :]  # ∂_I∂_J s  (M, L)
            zz = Z1[:, :, I][:, :, None] * Z1[:, :, J][:, None, :]  # (M, d, d): Z1[c, I] Z1[a, J]
            if I != J:
                zz = zz + np.swapaxes(zz, 1, 2)
            S2 += zz[..., None] * val[:, None, None, :]
    return s, S1, S2


def jet_grams(C, H=None, sparse=None) -> np.ndarray:
    """M (n, P, P) = C H C† per point (M_pq = Σ_ij C_pi H_ij conj(C_qj)); H None: the identity; ``sparse``: the
    same H as a scipy sparse matrix (the product then costs its non-zeros)."""
    n, P, L = C.shape
    Cc = np.conj(C).reshape(n * P, L)
    if sparse is not None:
        W = np.asarray(sparse @ Cc.T).T  # (n P, L): rows H conj(C_q)
    elif H is not None:
        W = Cc @ np.asarray(H).T
    else:
        W = Cc
    return np.einsum("npi,nqi->npq", C, W.reshape(n, P, L))


def make_jet_curvature(dim: int, potential, *, batch: int = 4096):
    """Compile once; returns ``f(grams) -> Curvature`` with grams a list of (n, P, P) arrays (:func:`jet_grams`)
    and ``potential(values) -> K`` a JAX function of the list of form values A_i (the same order).

    K(h, k) = potential([mono(h) M_i mono(k)]) is holomorphic in (h, k) ∈ C^{2d} and equals K(x + h) at
    k = conj(h) up to terms that no derivative of order (≤ 2, ≤ 2) sees; g_ab̄ = ∂_{h_a}∂_{k_b}K,
    ∂_c g, ∂̄_d∂_c g by forward-mode autodiff at 0."""
    import jax
    import jax.numpy as jnp

    batch = positive_int("batch", batch)
    index = _taylor_index(dim)
    eps = jnp.asarray(levi_civita(dim))
    spec = chern_einsum(dim)

    def mono(h):
        return jnp.stack([jnp.ones((), h.dtype) if not p else h[p[0]] if len(p) == 1 else h[p[0]] * h[p[1]]
                          for p in index])

    def per_point(*grams):
        def K(hk):
            mh, mk = mono(hk[:dim]), mono(hk[dim:])
            return potential([mh @ G @ mk for G in grams])

        def metric(hk):  # g_ab̄ (d, d) at (h, k)
            return jax.jacfwd(jax.jacfwd(K, holomorphic=True), holomorphic=True)(hk)[:dim, dim:]

        zero = jnp.zeros(2 * dim, dtype=jnp.complex128)
        G = metric(zero)
        dG = jax.jacfwd(metric, holomorphic=True)(zero)  # (d, d, 2d): [a, b, var]
        ddG = jax.jacfwd(jax.jacfwd(metric, holomorphic=True), holomorphic=True)(zero)  # (d, d, 2d, 2d)
        G = 0.5 * (G + jnp.conj(G.T))
        Gi = jnp.linalg.inv(G)
        d_c = jnp.transpose(dG[:, :, :dim], (2, 0, 1))  # [c, a, b] = ∂_c g_ab̄
        dbar_d = jnp.transpose(dG[:, :, dim:], (2, 0, 1))  # [d, a, b] = ∂̄_d g_ab̄
        dd = jnp.transpose(ddG[:, :, :dim, dim:], (2, 3, 0, 1))  # [c, d, a, b] = ∂̄_d∂_c g_ab̄
        th = jnp.einsum("cab,be->cae", d_c, Gi)
        T = (-jnp.einsum("cdab,be->cdae", dd, Gi)
             + jnp.einsum("cab,dbe->cdae", th, jnp.einsum("dab,be->dae", dbar_d, Gi)))
        T = jnp.transpose(T, (2, 3, 0, 1))  # [a, b, c, d]
        ric = jnp.einsum("aacd->cd", T)
        R = -jnp.real(jnp.trace(Gi @ ric))
        c = jnp.einsum(spec, eps, eps, eps, *[T[k] for k in range(dim)]) / jnp.pi**dim
        return G, jnp.real(jnp.linalg.det(G)), ric, R, jnp.real(c)

    fn = jax.jit(jax.vmap(per_point))

    def run(grams) -> Curvature:
        grams = [np.asarray(g, dtype=np.complex128) for g in grams]
        n = len(grams[0])
        out = [fn(*[g[lo:lo + batch] for g in grams]) for lo in range(0, n, batch)]
        cat = [np.concatenate([np.asarray(o[i]) for o in out]) for i in range(5)]
        return Curvature(g=cat[0], det_g=cat[1], ricci=cat[2], ricci_scalar=cat[3], chern_top=cat[4])

    return run
