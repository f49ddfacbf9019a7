"""The pulled-back four-derivative (metric-NTK) kernel of a projective kernel on a hypersurface.

For a real scalar projective kernel Θ(z, w) = f(u), u = |⟨z, w⟩|²/(|z|²|w|²) (``ProjectivePower``,
``ProjectiveMixture``, ``ProjectiveGaussian``) and points x, y of a complex ``dim``-fold X ⊂ P^{N−1}
with chart Jacobians P_x (dim × N, P_{aI} = ∂z_I/∂x_a), :class:`KahlerMetricKernel` is

    K(x, y)[(a, b), (k, l)] = ∂_a ∂̄_b ∂̄'_k ∂'_l Θ(x, y)
                            = Σ P_{aI} conj(P_{bJ}) conj(P'_{kK}) P'_{lL} ∂_{z_I}∂̄_{z_J}∂̄_{w_K}∂_{w_L} f(u)

(unprimed: derivatives in the first point in its chart, primed: in the second). It is the metric-NTK
of the frozen Kähler potential flow: with φ = Σ_y Σ_kl S_kl(y) ∂̄'_k∂'_l Θ(·, y) (S Hermitian d × d per
point, φ then real), the pulled-back δg_ab̄(x) = ∂_a∂̄_b φ(x) = Σ_y Σ_kl K(x, y)[(ab),(kl)] S_kl(y).
With this index order the kernel is Hermitian (K(y, x)^H = K(x, y)) and positive semi-definite.

Points. A point is given as one complex row ``[z, P.ravel()]`` of length N(1 + dim) (homogeneous
coordinates, then the dim × N chart Jacobian row-major): :func:`kahler_points` builds it from a
``PointSet``. The kernel is invariant under z → λz, P → λP (the chart representative), and every row of
P may be shifted by a multiple of z without changing K (Euler field annihilated), so φ is a function on
X and g_FS + ∂∂̄φ stays in the Kähler class of g_FS.

Implementations:

- ``jax_apply`` / ``jax_block`` (the tiled JAX backend): closed form. With S̃ = P'^H S P' (N × N),
  Q = I − w w^H/|w|², M = Q^T S̃ conj(Q), τ = tr S̃ − w^T S̃ w̄/|w|², the w-derivatives contracted with S are
  Φ(z) = h(u) b/(ZW) − k(u) τ/W with b = z^T M z̄, h = u f'' + f', k = u f', Z = |z|², W = |w|²; then
  ∂_a∂̄_b Φ follows from the chain rule in the scalars p = ⟨z, w⟩, p̄, Z and b (see :func:`_jax_apply`).
  The pair bilinear forms Y M Ȳ^T (Y = [z; P]) are one GEMM per tile; no n × n matrix is formed.
- ``dense``: an independent reference — JAX autodiff of the scalar f(u) to fourth order in real
  coordinates, converted to Wirtinger derivatives and pulled back (small point sets only).
- ``keops_apply``: not implemented (raises NotImplementedError; use backend="jax").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ntkflow._checks import positive_int

from .base import Kernel, complexify
from .projective import ProjectiveGaussian, ProjectiveKernel, check_projective_base, poly_derivative

__all__ = ["KahlerMetricKernel", "kahler_points", "f_derivative"]


def f_derivative(base: ProjectiveKernel, u, order: int):
    """f^{(order)}(u) of a projective kernel for any order ≥ 0 (NumPy or JAX arrays)."""
    if isinstance(base, ProjectiveGaussian):
        return base.f(u, order)  # exp((u − 1)/s²)/s^{2·order}
    return poly_derivative(base.coeffs, u, order)


def kahler_points(points, jacobian=None) -> np.ndarray:
    """Rows ``[z, P.ravel()]`` (n, N(1 + dim)) complex128 for :class:`KahlerMetricKernel`.

    Args:
        points: a ``PointSet`` (then ``jacobian`` is taken from it) or an (n, N) complex array.
        jacobian: (n, dim, N) complex chart Jacobians when ``points`` is an array.
    """
    if hasattr(points, "jacobian") and hasattr(points, "points"):
        z, P = np.asarray(points.points), np.asarray(points.jacobian)
    else:
        if jacobian is None:
            raise ValueError("jacobian: required when points is an array; pass the (n, dim, N) chart Jacobians.")
        z, P = np.asarray(points), np.asarray(jacobian)
    if z.ndim != 2 or P.ndim != 3 or P.shape[0] != z.shape[0] or P.shape[2] != z.shape[1]:
        raise ValueError(
            f"jacobian: expected shape (n, dim, N) = ({z.shape[0] if z.ndim == 2 else '?'}, dim, "
            f"{z.shape[-1]}) to match points {z.shape}, received {P.shape}."
        )
    return np.concatenate([z.astype(np.complex128), P.reshape(P.shape[0], -1).astype(np.complex128)], axis=1)


def _split(xc, N: int, dim: int):
    return xc[:, :N], xc[:, N:].reshape(xc.shape[0], dim, N)


def _jax_apply(base, N: int, dim: int, xr, yr, V):
    """Σ_j K(x_i, y_j) V_j for V (m, dim², k) complex; returns (tile, dim², k) complex.

    Chain rule for Φ(z) = F(p, q, Z, b) (q = p̄; D_a = Σ v_aI ∂_{z_I}, D̄_b = Σ conj(v_bJ) ∂̄_{z_J}):
    D_a p = π_a = v_a·w̄, D̄_b q = conj(π_b), D_a Z = ζ_a = v_a·z̄, D_aD̄_b Z = γ_ab = v_a·conj(v_b),
    D_a b = μ_a = v_a^T M z̄, D̄_b b = ν_b = z^T M conj(v_b), D_aD̄_b b = m_ab = v_a^T M conj(v_b);
    X_ab = Σ_{x∈{p,Z,b}, y∈{q,Z,b}} F_xy dx_a dy_b + F_Z γ_ab + F_b m_ab.
    """
    import jax.numpy as jnp

    d = dim
    xc, yc = complexify(xr), complexify(yr)
    z, P = _split(xc, N, d)  # (t, N), (t, d, N)
    w, Pw = _split(yc, N, d)  # (m, N), (m, d, N)
    m, k = V.shape[0], V.shape[-1]
    S = V.reshape(m, d, d, k)
    # column side: S̃ = P'^H S P', M = Q^T S̃ conj(Q), τ
    St = jnp.einsum("jkK,jklr,jlL->jKLr", Pw.conj(), S, Pw)
    W = jnp.sum(w.real**2 + w.imag**2, -1)  # (m,)
    Q = jnp.eye(N)[None] - w[:, :, None] * w.conj()[:, None, :] / W[:, None, None]
    M = jnp.einsum("jAK,jABr,jBL->jKLr", Q, St, Q.conj())
    tau = jnp.einsum("jKKr->jr", St) - jnp.einsum("jK,jKLr,jL->jr", w, St, w.conj()) / W[:, None]
    # row side
    Z = jnp.sum(z.real**2 + z.imag**2, -1)  # (t,)
    zeta = jnp.einsum("taN,tN->ta", P, z.conj())
    gam = jnp.einsum("taN,tbN->tab", P, P.conj())
    Y = jnp.concatenate([z[:, None, :], P], axis=1)  # (t, d+1, N)
    # pairs
    p = z @ w.conj().T  # (t, m)
    q = p.conj()
    pi = jnp.einsum("taN,jN->tja", P, w.conj())
    s = 1.0 / (Z[:, None] * W[None, :])
    u = (p.real**2 + p.imag**2) * s
    f1, f2, f3, f4 = (f_derivative(base, u, o) for o in (1, 2, 3, 4))
    h = u * f2 + f1
    h1 = u * f3 + 2.0 * f2
    h2 = u * f4 + 3.0 * f3
    YM = jnp.einsum("tAK,jKLr->tAjLr", Y, M)  # one GEMM (t(d+1) × N) @ (N × mNk)
    Bl = jnp.einsum("tAjLr,tBL->tjABr", YM, Y.conj())  # Bl_AB = Y_A^T M conj(Y_B)
    b = Bl[:, :, 0, 0, :]  # (t, m, k)
    mu = Bl[:, :, 1:, 0, :]  # (t, m, d, k)
    nu = Bl[:, :, 0, 1:, :]
    mab = Bl[:, :, 1:, 1:, :]
    tw = (tau / W[:, None])[None]  # (1, m, k)
    bs = b * s[:, :, None]
    G = h1[:, :, None] * bs - h[:, :, None] * tw
    Gu = h2[:, :, None] * bs - h1[:, :, None] * tw
    uu = u[:, :, None]
    ss = s[:, :, None]
    Zc = Z[:, None, None]
    c1 = ss * (G + uu * Gu)
    T = uu * Gu + h1[:, :, None] * bs + G
    c2 = -(q[:, :, None] * ss / Zc) * T  # π_a ζ̄_b
    c4 = -(p[:, :, None] * ss / Zc) * T  # ζ_a π̄_b
    c3 = h1 * q * s * s  # π_a ν_b
    c7 = h1 * p * s * s  # μ_a π̄_b
    c6 = -(s / Z[:, None]) * (u * h1 + h)  # ζ_a ν_b and μ_a ζ̄_b
    c5 = (2.0 * uu * G + uu * uu * Gu + 2.0 * uu * h1[:, :, None] * bs + 2.0 * h[:, :, None] * bs) / Zc**2
    FZ = -(uu * G + h[:, :, None] * bs) / Zc
    Fb = h * s
    zb = zeta.conj()
    X = jnp.einsum("tjr,tja,tjb->tabr", c1, pi, pi.conj())
    X = X + jnp.einsum("tjr,tja->tar", c2, pi)[:, :, None, :] * zb[:, None, :, None]
    X = X + zeta[:, :, None, None] * jnp.einsum("tjr,tjb->tbr", c4, pi.conj())[:, None, :, :]
    X = X + jnp.einsum("tj,tja,tjbr->tabr", c3, pi, nu)
    X = X + jnp.einsum("tj,tjar,tjb->tabr", c7, mu, pi.conj())
    X = X + zeta[:, :, None, None] * jnp.einsum("tj,tjbr->tbr", c6, nu)[:, None, :, :]
    X = X + jnp.einsum("tj,tjar->tar", c6, mu)[:, :, None, :] * zb[:, None, :, None]
    X = X + (zeta[:, :, None] * zb[:, None, :])[:, :, :, None] * jnp.sum(c5, 1)[:, None, None, :]
    X = X + gam[:, :, :, None] * jnp.sum(FZ, 1)[:, None, None, :]
    X = X + jnp.einsum("tj,tjabr->tabr", Fb, mab)
    return X.reshape(X.shape[0], d * d, k)


@dataclass(frozen=True)
class KahlerMetricKernel(Kernel):
    """K(x, y)[(a,b),(k,l)] = ∂_a∂̄_b∂̄'_k∂'_l Θ(x, y) pulled back to X (see the module docstring).

    Block (dim², dim²), complex, Hermitian, PSD; points are rows ``[z, P.ravel()]`` from
    :func:`kahler_points`. The operator maps S (n·dim², Hermitian per point, layout k·dim + l) to the
    metric change δg (layout a·dim + b) of φ = Σ_y Σ_kl S_kl(y) ∂̄'_k∂'_l Θ(·, y).

    Args:
        base: the scalar projective kernel Θ (e.g. ``ProjectiveGaussian(s2=0.2)``).
        n_coords: N, homogeneous coordinates of the ambient P^{N−1}.
        dim: complex dimension of X (rows of each chart Jacobian).
    """

    base: ProjectiveKernel
    n_coords: int
    dim: int

    input_kind = "complex"
    output_kind = "complex"

    def __post_init__(self):
        check_projective_base(self.base)
        object.__setattr__(self, "n_coords", positive_int("n_coords", self.n_coords))
        object.__setattr__(self, "dim", positive_int("dim", self.dim))
        if self.dim >= self.n_coords:
            raise ValueError(f"dim: must be < n_coords={self.n_coords}, received {self.dim}.")

    @property
    def block_shape(self):
        return (self.dim**2, self.dim**2)

    @property
    def point_width(self) -> int:
        return self.n_coords * (1 + self.dim)

    def input_dim_ok(self, d):
        if d != self.point_width:
            raise ValueError(
                f"points: KahlerMetricKernel(n_coords={self.n_coords}, dim={self.dim}) needs rows [z, P.ravel()] "
                f"of length {self.point_width} (use kahler_points(pointset)), received dimension {d}."
            )

    # -- JAX ---------------------------------------------------------------------------------
    def jax_apply(self, xr, yr, V):
        """Σ_j K(x_i, y_j) V[j] for V (m, dim², k) complex: (tile, dim², k); blocks never formed."""
        import jax.numpy as jnp

        return _jax_apply(self.base, self.n_coords, self.dim, xr, yr, V.astype(jnp.complex128))

    def jax_block(self, xr, yr):
        import jax
        import jax.numpy as jnp

        p = self.dim**2
        eye = jnp.eye(p, dtype=jnp.complex128)[None]

        def col(y1):
            return self.jax_apply(xr, y1[None], eye)  # (t, p, p)

        return jnp.transpose(jax.vmap(col)(yr), (1, 0, 2, 3))

    # -- dense reference (autodiff to fourth order) ------------------------------------------------
    def dense(self, x, y):
        import jax
        import jax.numpy as jnp

        N, d = self.n_coords, self.dim
        x = np.asarray(x, dtype=np.complex128)
        y = np.asarray(y, dtype=np.complex128)
        self.input_dim_ok(x.shape[1])
        self.input_dim_ok(y.shape[1])
        base = self.base

        def theta(zr, wr):
            zz, ww = zr[:N] + 1j * zr[N:], wr[:N] + 1j * wr[N:]
            pp = jnp.sum(zz * ww.conj())
            u = (pp.real**2 + pp.imag**2) / (jnp.sum(zr * zr) * jnp.sum(wr * wr))
            return f_derivative(base, u, 0)

        h4 = jax.jit(jax.vmap(jax.vmap(jax.hessian(jax.hessian(theta, argnums=1), argnums=0), (None, 0)), (0, None)))
        zr = np.concatenate([x[:, :N].real, x[:, :N].imag], 1)
        wr = np.concatenate([y[:, :N].real, y[:, :N].imag], 1)
        H = np.asarray(h4(zr, wr))  # (n, m, 2N_w, 2N_w, 2N_z, 2N_z): [wα, wβ, zγ, zδ]
        D = np.concatenate([0.5 * np.eye(N), -0.5j * np.eye(N)], axis=1)  # ∂ = (∂_a − i∂_b)/2
        Db = D.conj()
        # ambient ∂_{z_I}∂̄_{z_J}∂̄_{w_K}∂_{w_L}
        Kamb = np.einsum("Kc,Ld,Ie,Jf,nmcdef->nmIJKL", Db, D, D, Db, H, optimize=True)
        _, P = _split(x, N, d)
        _, Pw = _split(y, N, d)
        out = np.einsum("naI,nbJ,mkK,mlL,nmIJKL->nmabkl", P, P.conj(), Pw.conj(), Pw, Kamb, optimize=True)
        n, m = x.shape[0], y.shape[0]
        return out.reshape(n, m, d * d, d * d)

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        raise NotImplementedError(
            "backend: KahlerMetricKernel has no KeOps form yet; use kernel_operator(..., backend='jax')."
        )

    def diag(self, x):
        import jax.numpy as jnp

        xr = np.concatenate([np.asarray(x).real, np.asarray(x).imag], 1)
        out = [np.asarray(self.jax_block(jnp.asarray(xr[i : i + 1]), jnp.asarray(xr[i : i + 1])))[0, 0] for i in range(len(x))]
        return np.stack(out)
