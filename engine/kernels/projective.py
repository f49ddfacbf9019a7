"""Kernels on projective space for homogeneous coordinates z ∈ C^N (``input_kind = "complex"``).

With u(z, w) = |⟨z, w⟩|² / (|z|² |w|²) ∈ [0, 1] (cos² of the Fubini–Study distance; C*-invariant in
each argument, U(N)-invariant), a projective kernel is k(z, w) = f(u):

- :class:`ProjectivePower`     f(u) = u^k (the reproducing kernel of the (k,k)-bihomogeneous functions)
- :class:`ProjectiveMixture`   f(u) = Σ_k a_k u^k, a_k ≥ 0
- :class:`ProjectiveGaussian`  f(u) = exp((u − 1)/s²) (a Gaussian in the chordal distance)

All are real, symmetric and positive semi-definite. :class:`DzDwBar` is the mixed Wirtinger
derivative kernel ∂_{z_a} ∂̄_{w_b} f(u(z, w)) of any of them (block (N, N), complex, Hermitian).

JAX and KeOps receive realified points [Re z, Im z] (n, 2N); with z = z₁ + i z₂, w = w₁ + i w₂:
Re⟨z, w⟩ = z₁·w₁ + z₂·w₂ and Im⟨z, w⟩ = z₂·w₁ − z₁·w₂ (⟨z, w⟩ = Σ z_c w̄_c; only |⟨z, w⟩| enters f).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int

from ._keops_util import keops_params
from .base import Kernel, complexify

# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _np_u(z, w):
    z = np.asarray(z, dtype=np.complex128)
    w = np.asarray(w, dtype=np.complex128)
    p = z @ w.conj().T  # (n, m): Σ_c z_c w̄_c
    Z = (np.abs(z) ** 2).sum(-1)
    W = (np.abs(w) ** 2).sum(-1)
    return np.abs(p) ** 2 / (Z[:, None] * W[None, :])


def _jax_u(xr, yr):
    import jax.numpy as jnp

    h = xr.shape[-1] // 2
    x1, x2, y1, y2 = xr[:, :h], xr[:, h:], yr[:, :h], yr[:, h:]
    pr = xr @ yr.T
    pi = x2 @ y1.T - x1 @ y2.T
    Z = jnp.sum(xr * xr, -1)[:, None]
    W = jnp.sum(yr * yr, -1)[None, :]
    return (pr * pr + pi * pi) / (Z * W)


def _keops_pq(Xi, Yj):
    """(Re p, Im p, |z|², |w|²) as KeOps formulas from realified points."""
    h = Xi.ndim // 2
    rotY = (-Yj.extract(h, h)).concat(Yj.extract(0, h))  # [−w₂, w₁]
    return (Xi | Yj), (Xi | rotY), Xi.sqnorm2(), Yj.sqnorm2()


class ProjectiveKernel(Kernel):
    """Abstract: k(z, w) = f(u(z, w)). Subclasses give f and its first two derivatives."""

    input_kind = "complex"

    # f, f', f'' on NumPy / JAX arrays
    @abc.abstractmethod
    def f(self, u, order: int = 0):
        """f^{(order)}(u) for order 0, 1, 2 (NumPy or JAX arrays)."""

    @abc.abstractmethod
    def keops_f(self, u, like, order: int = 0):
        """f^{(order)}(u) as a KeOps formula (``like`` gives the dtype of parameters)."""

    def dense(self, z, w):
        return self.f(_np_u(z, w))

    def jax_block(self, xr, yr):
        return self.f(_jax_u(xr, yr))

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        pr, pi, Z, W = _keops_pq(Xi, Yj)
        u = (pr.square() + pi.square()) / (Z * W)
        return self.keops_f(u, Xi) * Vj

    def diag(self, z):
        return np.full(len(z), float(self.f(np.float64(1.0))))


def poly_derivative(coeffs, u, order):
    """Σ_k a_k (d/du)^order u^k by Horner (works on NumPy and JAX arrays)."""
    c = list(coeffs)
    for _ in range(order):
        c = [k * c[k] for k in range(1, len(c))]
    if not c:
        return 0.0 * u
    r = c[-1] + 0.0 * u
    for a in reversed(c[:-1]):
        r = r * u + a
    return r


def _keops_poly(coeffs, u, like, order):
    c = list(coeffs)
    for _ in range(order):
        c = [k * c[k] for k in range(1, len(c))]
    if not c:
        c = [0.0]
    P = keops_params(like, c)
    if len(c) == 1:
        return P.elem(0) + 0.0 * u
    r = P.elem(len(c) - 1) * u + P.elem(len(c) - 2)
    for i in range(len(c) - 3, -1, -1):
        r = r * u + P.elem(i)
    return r


@dataclass(frozen=True)
class ProjectiveMixture(ProjectiveKernel):
    """k(z, w) = Σ_k a_k u^k with coefficients ``coeffs = (a_0, a_1, …)``, all a_k ≥ 0 (so PSD).

    One KeOps formula serves all mixtures with the same number of coefficients.
    """

    coeffs: tuple = (0.0, 1.0)

    def __post_init__(self):
        try:
            c = tuple(float(nonneg_float(f"coeffs[{i}]", a)) for i, a in enumerate(self.coeffs))
        except TypeError:
            raise TypeError(f"coeffs: expected a tuple of non-negative numbers, received {self.coeffs!r}.") from None
        if not c or not any(c):
            raise ValueError(f"coeffs: need at least one positive coefficient, received {self.coeffs!r}.")
        object.__setattr__(self, "coeffs", c)

    def f(self, u, order=0):
        return poly_derivative(self.coeffs, u, order)

    def keops_f(self, u, like, order=0):
        return _keops_poly(self.coeffs, u, like, order)


@dataclass(frozen=True)
class ProjectivePower(ProjectiveKernel):
    """k(z, w) = u^k, k ≥ 1 (shares the KeOps formula of a k+1-coefficient :class:`ProjectiveMixture`)."""

    k: int = 1

    def __post_init__(self):
        object.__setattr__(self, "k", positive_int("k", self.k))

    @property
    def coeffs(self) -> tuple:
        return (0.0,) * self.k + (1.0,)

    def dense(self, z, w):
        return _np_u(z, w) ** self.k

    def f(self, u, order=0):
        k = self.k
        if order == 0:
            return u**k
        if order == 1:
            return k * u ** (k - 1)
        return k * (k - 1) * u ** (k - 2) if k >= 2 else 0.0 * u

    def keops_f(self, u, like, order=0):
        return _keops_poly(self.coeffs, u, like, order)


@dataclass(frozen=True)
class ProjectiveGaussian(ProjectiveKernel):
    """k(z, w) = exp((u − 1)/s²) with s² = ``s2`` > 0 (= e^{−1/s²} Σ_k u^k/(k! s^{2k}))."""

    s2: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "s2", positive_float("s2", self.s2))

    def dense(self, z, w):
        return np.exp((_np_u(z, w) - 1.0) / self.s2)

    def f(self, u, order=0):
        if isinstance(u, (np.ndarray, np.generic, float, int)):
            return np.exp((u - 1.0) / self.s2) / self.s2**order
        import jax.numpy as jnp

        return jnp.exp((u - 1.0) / self.s2) / self.s2**order

    def keops_f(self, u, like, order=0):
        P = keops_params(like, [1.0 / self.s2, 1.0 / self.s2**order])
        return ((u - 1.0) * P.elem(0)).exp() * P.elem(1)


# ---------------------------------------------------------------------------------------------
# the mixed Wirtinger derivative kernel
# ---------------------------------------------------------------------------------------------


def check_projective_base(base):
    """``base`` must be a scalar projective kernel (a function of u = |⟨z,w⟩|²/(|z|²|w|²))."""
    if not isinstance(base, ProjectiveKernel):
        raise TypeError(
            f"base: expected a projective kernel (ProjectivePower, ProjectiveMixture, ProjectiveGaussian), "
            f"received {type(base).__name__}."
        )


@dataclass(frozen=True)
class DzDwBar(Kernel):
    """K(z, w)[a, b] = ∂_{z_a} ∂̄_{w_b} f(u(z, w)) for a projective kernel ``base`` on C^``dim``.

    This is Θ_{ab̄} = ∂_a ∂̄_b Θ of a scalar kernel (before pulling back to a hypersurface): the
    covariance E[∂_a φ(z) conj(∂_b φ(w))] of the holomorphic gradients of φ ~ GP(0, k). Hermitian
    (K(w, z)^H = K(z, w)) and positive semi-definite. Closed form, with p = Σ_c z_c w̄_c,
    Z = |z|², W = |w|², A_a = w̄_a − p z̄_a/Z, B_b = z_b − p w_b/W (so that ∂_{z_a} u = p̄ A_a/(ZW) and
    ∂̄_{w_b} u = p̄ B_b/(ZW)):

        K_ab = f''(u) p̄² A_a B_b / (Z W)² + f'(u) p̄/(Z W) · (δ_ab − z̄_a z_b/Z − A_a w_b/W).

    Every row is annihilated by the Euler field: Σ_a z_a K_ab = 0 (degree-0 homogeneity).

    Args:
        base: a :class:`ProjectivePower`, :class:`ProjectiveMixture` or :class:`ProjectiveGaussian`.
        dim: N, the number of homogeneous coordinates (the block is N × N).
    """

    base: ProjectiveKernel
    dim: int

    input_kind = "complex"
    output_kind = "complex"

    def __post_init__(self):
        check_projective_base(self.base)
        object.__setattr__(self, "dim", positive_int("dim", self.dim))

    @property
    def block_shape(self):
        return (self.dim, self.dim)

    def input_dim_ok(self, d):
        if d != self.dim:
            raise ValueError(f"points: DzDwBar(dim={self.dim}) needs points in C^{self.dim}, received dimension {d}.")

    def dense(self, z, w):
        z = np.asarray(z, dtype=np.complex128)
        w = np.asarray(w, dtype=np.complex128)
        p = z @ w.conj().T  # (n, m)
        Z = (np.abs(z) ** 2).sum(-1)[:, None]
        W = (np.abs(w) ** 2).sum(-1)[None, :]
        u = np.abs(p) ** 2 / (Z * W)
        f1, f2 = self.base.f(u, 1), self.base.f(u, 2)
        zb = z.conj()[:, None, :]  # (n, 1, N)
        A = w.conj()[None, :, :] - p[:, :, None] * zb / Z[:, :, None]  # (n, m, N)
        B = z[:, None, :] - p[:, :, None] * w[None, :, :] / W[:, :, None]
        eye = np.eye(self.dim)
        t1 = (f2 * p.conj() ** 2 / (Z * W) ** 2)[:, :, None, None] * A[:, :, :, None] * B[:, :, None, :]
        inner = (
            eye[None, None]
            - zb[:, :, :, None] * z[:, None, None, :] / Z[:, :, None, None]
            - A[:, :, :, None] * w[None, :, None, :] / W[:, :, None, None]
        )
        t2 = (f1 * p.conj() / (Z * W))[:, :, None, None] * inner
        return t1 + t2

    def jax_block(self, xr, yr):
        import jax.numpy as jnp

        z, w = complexify(xr), complexify(yr)
        p = z @ w.conj().T
        Z = jnp.sum(xr * xr, -1)[:, None]
        W = jnp.sum(yr * yr, -1)[None, :]
        ZW = Z * W
        ap2 = p.real**2 + p.imag**2
        u = ap2 / ZW
        f1, f2 = self.base.f(u, 1), self.base.f(u, 2)
        A = w.conj()[None] - (p / Z)[:, :, None] * z.conj()[:, None, :]
        B = z[:, None, :] - (p / W)[:, :, None] * w[None]
        c1 = f2 * p.conj() ** 2 / ZW**2
        c2 = f1 * p.conj() / ZW
        outer_zz = z.conj()[:, None, :, None] * z[:, None, None, :] / Z[:, :, None, None]
        outer_Aw = A[:, :, :, None] * w[None, :, None, :] / W[:, :, None, None]
        eye = jnp.eye(self.dim)
        return c1[:, :, None, None] * A[:, :, :, None] * B[:, :, None, :] + c2[:, :, None, None] * (
            eye - outer_zz - outer_Aw
        )

    def keops_apply(self, Xi, Yj, Vj, nrhs):
        N, k = self.dim, nrhs
        zr, zi = Xi.extract(0, N), Xi.extract(N, N)
        wr, wi = Yj.extract(0, N), Yj.extract(N, N)
        pr = (zr | wr) + (zi | wi)
        pim = (zi | wr) - (zr | wi)
        Z, W = Xi.sqnorm2(), Yj.sqnorm2()
        iZ, iW = 1.0 / Z, 1.0 / W
        u = (pr.square() + pim.square()) * iZ * iW
        f1 = self.base.keops_f(u, Xi, 1)
        f2 = self.base.keops_f(u, Xi, 2)
        # A = w̄ − p z̄/Z,  B = z − p w/W
        Ar = wr - (pr * zr + pim * zi) * iZ
        Ai = -wi - (pim * zr - pr * zi) * iZ
        Br = zr - (pr * wr - pim * wi) * iW
        Bi = zi - (pr * wi + pim * wr) * iW
        Vr, Vi = Vj.extract(0, N * k), Vj.extract(N * k, N * k)

        def bil(ar, ai):  # Σ_b a_b V[b, r] (bilinear), complex k-vector
            return ar.vecmatmult(Vr) - ai.vecmatmult(Vi), ar.vecmatmult(Vi) + ai.vecmatmult(Vr)

        def outer(ar, ai, sr, si):  # a ⊗ s, complex, layout a*k + r
            return ar.tensorprod(sr) - ai.tensorprod(si), ar.tensorprod(si) + ai.tensorprod(sr)

        sr, si = bil(Br, Bi)
        tr, ti = bil(zr, zi)
        qr, qi = bil(wr, wi)
        t1r, t1i = outer(Ar, Ai, sr, si)  # A ⊗ (B·V)
        zt_r, zt_i = outer(zr, -zi, tr, ti)  # z̄ ⊗ (z·V)
        aq_r, aq_i = outer(Ar, Ai, qr, qi)  # A ⊗ (w·V)
        h = f2 * (iZ * iW).square()
        g = f1 * iZ * iW
        # KV = p̄ · M,  M = h p̄ (A ⊗ B·V) + g (V − z̄ ⊗ (z·V)/Z − A ⊗ (w·V)/W)
        Mr = h * (pr * t1r + pim * t1i) + g * (Vr - zt_r * iZ - aq_r * iW)
        Mi = h * (pr * t1i - pim * t1r) + g * (Vi - zt_i * iZ - aq_i * iW)
        re = pr * Mr + pim * Mi
        im = pr * Mi - pim * Mr
        return re.concat(im)

    def diag(self, z):
        return np.stack([self.dense(z[i : i + 1], z[i : i + 1])[0, 0] for i in range(len(z))])
