"""Kähler metric-NTKs: Θ_{K,g_ij̄}(z, z') = ∂'_i∂̄'_j Θ_K(z, z') (exact at finite width, by autodiff of the
scalar NTK), the infinite-width Θ̄_ij̄kl̄ = ∂_i∂̄_j∂'_k∂̄'_l Θ̄ against finite differences of the engine
kernel, Wirtinger derivatives of known potentials, and the pullback to a hypersurface."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.ntk import (
    MLP,
    CosNet,
    FubiniStudyPhiMetric,
    KahlerPotentialMetric,
    ddbar,
    fubini_study,
    infinite_metric_ntk,
    jacobian,
    network_kernel,
    ntk_tensor,
)
from ntkflow.ntk.infinite import _wirtinger_matrix
from ntkflow.ntk.metrics import realify_point

from _helpers import cpoints


def test_wirtinger_derivatives_of_known_potentials(rng):
    z = jnp.asarray(cpoints(rng, 1, 3)[0])
    # ∂∂̄|z|² = δ,  ∂∂̄ log|z|² = g_FS with t = π
    np.testing.assert_allclose(ddbar(lambda x: jnp.sum(x * x), z), np.eye(3), atol=1e-13)
    g = ddbar(lambda x: jnp.log(jnp.sum(x * x)), z)
    np.testing.assert_allclose(g, fubini_study(z, t=np.pi), atol=1e-13)
    np.testing.assert_allclose(g, np.conj(g).T, atol=1e-14)  # Hermitian
    # ∂∂̄ |z_1|⁴ = 4|z_1|² at (1,1)
    h = ddbar(lambda x: (x[0] ** 2 + x[3] ** 2) ** 2, z)
    np.testing.assert_allclose(h[0, 0], 4 * abs(z[0]) ** 2, rtol=1e-12)


def test_finite_width_identity_theta_K_g_is_ddbar_of_theta_K(rng):
    """Σ_θ ∂K(z)/∂θ ∂g_kl̄(w)/∂θ = ∂_k∂̄_l|_w Σ_θ ∂K(z)/∂θ ∂K(w)/∂θ, for one random finite network."""
    model = KahlerPotentialMetric(MLP(4, (7,), "erf"), 2)
    params = model.init(jax.random.PRNGKey(2))
    z, w = cpoints(rng, 2, 2), cpoints(rng, 2, 2)
    tp, fp = model.split(params)
    jK = jax.vmap(jax.grad(lambda t, zi: model.potential({**fp, **t}, zi)), in_axes=(None, 0))(tp, z)
    jg = jacobian(model, params, w)  # flat [Re g, Im g]: (m, 2·4, ...)

    def contract(a, b):
        return sum(jnp.einsum("ns,mps->nmp", x.reshape(x.shape[0], -1), y.reshape(y.shape[0], y.shape[1], -1))
                   for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    flat = np.asarray(contract(jK, jg))  # (n, m, 8)
    lhs = flat[..., :4].reshape(2, 2, 2, 2) + 1j * flat[..., 4:].reshape(2, 2, 2, 2)
    for i in range(2):
        def theta_K(wr, i=i):
            jw = jax.grad(lambda t: model.potential({**fp, **t}, wr[:2] + 1j * wr[2:]))(tp)
            return sum(jnp.sum(a[i] * b) for a, b in zip(jax.tree_util.tree_leaves(jK), jax.tree_util.tree_leaves(jw)))

        rhs = jax.jit(jax.vmap(lambda wj, f=theta_K: ddbar(f, wj)))(jnp.asarray(w))  # (m, 2, 2)
        np.testing.assert_allclose(lhs[i], rhs, rtol=1e-10, atol=1e-12)


def _fd_d4(k, x, y, h=1e-2):
    """∂⁴k/∂x_a∂x_b∂y_c∂y_d by nested central differences (O(h²)); k(x, y) a NumPy scalar function."""
    D = len(x)
    E = np.eye(D)
    out = np.zeros((D,) * 4)
    signs = list(itertools.product((1, -1), repeat=4))
    for a, b, c, d in itertools.product(range(D), repeat=4):
        s = 0.0
        for sa, sb, sc, sd in signs:
            s += sa * sb * sc * sd * k(x + h * (sa * E[a] + sb * E[b]), y + h * (sc * E[c] + sd * E[d]))
        out[a, b, c, d] = s / (16 * h**4)
    return out


@pytest.mark.parametrize("net", [MLP(4, (8,), "erf", sigma_w=1.2, sigma_b=0.3),
                                 CosNet(4, 8, sigma_a=1.0, sigma_b=1.3, trainable=("a", "b", "c"))])
def test_infinite_kahler_kernel_equals_four_derivatives_of_scalar_kernel(net, rng):
    model = KahlerPotentialMetric(net, 2)
    z, w = cpoints(rng, 1, 2) * 0.7, cpoints(rng, 1, 2) * 0.7
    T = ntk_tensor(model, infinite_metric_ntk(model, z, w))[0, 0]  # (2, 2, 2, 2) complex
    kern = network_kernel(net)
    args = (lambda a, b: kern.dense(a[None], b[None])[0, 0], np.asarray(realify_point(z[0])),
            np.asarray(realify_point(w[0])))
    d4 = (4 * _fd_d4(*args, h=1e-2) - _fd_d4(*args, h=2e-2)) / 3  # Richardson: O(h⁴)
    W = _wirtinger_matrix(2)
    ref = np.einsum("ijab,abcd,klcd->ijkl", W, d4, W)
    np.testing.assert_allclose(T, ref, atol=1e-5 * np.abs(ref).max())
    # the Kähler metric-NTK mixes components (unlike independent networks)
    assert np.abs(T[0, 0, 1, 1]) > 1e-3 * np.abs(T).max()


def test_fubini_study_phi_pullback_is_the_contracted_ambient_kernel(rng):
    net = MLP(18, (6,), "erf", sigma_w=1.1, sigma_b=0.2)
    amb = FubiniStudyPhiMetric(net, 3, pullback=False)
    pb = FubiniStudyPhiMetric(net, 3, pullback=True)
    z = cpoints(rng, 2, 3)
    P = cpoints(rng, 2, 3).reshape(2, 1, 3)
    params = amb.init(jax.random.PRNGKey(0))
    for i in range(2):
        g = amb.metric(params, jnp.asarray(z[i]))
        np.testing.assert_allclose(pb.metric(params, (z[i], P[i])), P[i] @ g @ P[i].conj().T, atol=1e-13)
        # φ is C*-invariant, g_FS is the (1,1)-form of P^2: the metric is invariant under z → λz·|λ|⁻¹ phases
        np.testing.assert_allclose(amb.metric(params, jnp.asarray(z[i] * np.exp(0.7j))), g, atol=1e-12)
    Ta = ntk_tensor(amb, infinite_metric_ntk(amb, z))  # (2, 2, 3, 3, 3, 3)
    Tp = ntk_tensor(pb, infinite_metric_ntk(pb, (z, P)))  # (2, 2, 1, 1, 1, 1)
    ref = np.einsum("naI,nbJ,mcK,mdL,nmIJKL->nmabcd", P, P.conj(), P, P.conj(), Ta)
    np.testing.assert_allclose(Tp, ref, atol=1e-10 * np.abs(ref).max())


def test_potential_to_metric_kernel_is_ddbar_of_scalar_kernel(rng):
    """Θ̄_ij̄(z, z') = ∂'_i∂̄'_j Θ̄(z, z') against central differences of the engine kernel, and its finite-width
    counterpart Σ_θ ∂K(z)∂g_ij̄(z') averaged over random networks (1 hidden layer: unbiased)."""
    from ntkflow.ntk import infinite_potential_metric_ntk

    net = MLP(4, (8,), "erf", sigma_w=1.2, sigma_b=0.3)
    model = KahlerPotentialMetric(net, 2)
    z, w = cpoints(rng, 1, 2) * 0.7, cpoints(rng, 1, 2) * 0.7
    T = infinite_potential_metric_ntk(model, z, w)[0, 0]  # (2, 2) complex
    kern = network_kernel(net)
    x0, y0 = np.asarray(realify_point(z[0])), np.asarray(realify_point(w[0]))
    E = np.eye(4)
    h = 1e-3
    H = np.array([[sum(sc * sd * kern.dense(x0[None], (y0 + h * (sc * E[c] + sd * E[d]))[None])[0, 0]
                       for sc in (1, -1) for sd in (1, -1)) / (4 * h * h) for d in range(4)] for c in range(4)])
    ref = 0.25 * ((H[:2, :2] + H[2:, 2:]) + 1j * (H[:2, 2:] - H[2:, :2]))
    np.testing.assert_allclose(T, ref, atol=1e-6 * np.abs(ref).max())
