"""The literal Gaussian-kernel Kähler potential flow in dual form (flows/gaussian_flow.py) and its
four-derivative metric kernel (engine/kernels/kahler.py), against independent references:
fourth-order autodiff of the scalar kernel, finite differences of ∂∂̄φ and of the loss, dense
eigenvalues of the metric-NTK Gram."""
import math

import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.engine import ProjectiveGaussian, ProjectivePower, kernel_operator
from ntkflow.engine.kernels.kahler import KahlerMetricKernel, kahler_points
from ntkflow.experiments.gaussian_flow import (GaussianFlowConfig, GaussianKahlerFlow, pack_hermitian,
                                         unpack_hermitian)
from ntkflow.manifolds import preset, sample


@pytest.fixture(scope="module")
def points():
    return sample(preset("fermat-quintic"), 120, seed=3, progress=False)


def _herm(rng, n, d, scale=1.0):
    a = rng.normal(size=(n, d, d)) + 1j * rng.normal(size=(n, d, d))
    return scale * (a + np.conj(np.swapaxes(a, 1, 2)))


@pytest.mark.parametrize("base", [ProjectiveGaussian(0.1), ProjectivePower(3)])
def test_lazy_operator_matches_autodiff_reference(points, base):
    """JAX-tiled closed form == fourth-order autodiff of f(u) (Wirtinger, pulled back), rtol 1e-10."""
    k = KahlerMetricKernel(base, 5, 3)
    x, y = kahler_points(points[:6]), kahler_points(points[6:13])
    ref = kernel_operator(k, x, y, backend="dense").to_dense()  # (6·9, 7·9) from kernel.dense
    op = kernel_operator(k, x, y, backend="jax", tile=4)
    rng = np.random.default_rng(0)
    V = rng.normal(size=(63, 3)) + 1j * rng.normal(size=(63, 3))
    np.testing.assert_allclose(op.mm(V), ref @ V, rtol=1e-10, atol=1e-10 * np.abs(ref @ V).max())
    blk = np.asarray(k.jax_block(op.x.real, op.y.real)).reshape(6, 7, 9, 9).transpose(0, 2, 1, 3).reshape(54, 63)
    np.testing.assert_allclose(blk, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_kernel_hermitian_psd_and_projective(points):
    """K(y, x)^H = K(x, y), PSD; invariant under the representative z → λz, P → λP and under P_a → P_a + c_a z
    (Euler field annihilated), so φ is a function on X and g stays in the Kähler class of g_FS."""
    k = KahlerMetricKernel(ProjectiveGaussian(0.2), 5, 3)
    ps = points[:10]
    x = kahler_points(ps)
    A = kernel_operator(k, x, backend="jax", tile=8).mm(np.eye(90, dtype=complex))
    np.testing.assert_allclose(A, A.conj().T, atol=1e-12 * np.abs(A).max())
    ev = np.linalg.eigvalsh(A)
    assert ev.min() > -1e-10 * ev.max()
    rng = np.random.default_rng(1)
    lam = rng.normal(size=10) + 1j * rng.normal(size=10)
    shift = rng.normal(size=(10, 3)) + 1j * rng.normal(size=(10, 3))
    P2 = (np.asarray(ps.jacobian) + shift[:, :, None] * np.asarray(ps.points)[:, None, :]) * lam[:, None, None]
    x2 = kahler_points(np.asarray(ps.points) * lam[:, None], P2)
    B = kernel_operator(k, x2, backend="jax", tile=8).mm(np.eye(90, dtype=complex))
    np.testing.assert_allclose(B, A, atol=1e-10 * np.abs(A).max())


def test_metric_change_is_ddbar_of_potential(points):
    """δg = K S at x equals the finite-difference pulled-back ∂∂̄ of φ = Σ S_kl ∂̄'_k∂'_lΘ(·, x')."""
    train, test = points[:40], points[40:43]
    flow = GaussianKahlerFlow(train, GaussianFlowConfig(s2=0.2, tile=8))
    S = _herm(np.random.default_rng(2), 40, 3, 0.1)
    op = kernel_operator(flow.kernel, kahler_points(test), kahler_points(train), backend="jax", tile=8)
    dg = flow.delta_g(S, op)
    h = 2e-4
    for i in range(len(test)):
        z, P = np.asarray(test.points[i]), np.asarray(test.jacobian[i])
        dirs = np.concatenate([P, 1j * P])  # real directions v_a, i v_a (6, N)
        pts, idx = [], []
        for a in range(6):
            for b in range(6):
                for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    pts.append(z + h * (sa * dirs[a] + sb * dirs[b]))
        f = flow.potential(S, np.array(pts)).reshape(6, 6, 4)
        H = (f[..., 0] - f[..., 1] - f[..., 2] + f[..., 3]) / (4 * h * h)  # real directional Hessian
        X = 0.25 * (H[:3, :3] + H[3:, 3:] + 1j * (H[:3, 3:] - H[3:, :3]))
        np.testing.assert_allclose(X, dg[i], rtol=0, atol=1e-6 * np.abs(dg[i]).max())


@pytest.mark.parametrize("loss", ["log", "sigma2"])
def test_rhs_is_rkhs_gradient_of_loss(points, loss):
    """dL along δS == ⟨E, K δS⟩_F (E = −RHS): the flow is the RKHS gradient flow; dL/dt = −⟨E, K E⟩ < 0."""
    train = points[:50]
    flow = GaussianKahlerFlow(train, GaussianFlowConfig(s2=0.2, loss=loss, tile=10))
    rng = np.random.default_rng(3)
    S = _herm(rng, 50, 3)
    S *= 0.05 * np.abs(flow.g0).max() / np.abs(flow.delta_g(S)).max()  # a 5 % metric change
    E = flow.gradient(S)
    np.testing.assert_allclose(unpack_hermitian(-flow.rhs(0.0, pack_hermitian(S)), 3), E, atol=1e-14)
    for _ in range(2):
        dS = _herm(rng, 50, 3) * (np.abs(S).max() / 3)
        eps = 1e-4
        fd = (flow.loss_of_state(S + eps * dS) - flow.loss_of_state(S - eps * dS)) / (2 * eps)
        an = float(np.real(np.vdot(E, flow.delta_g(dS))))
        assert fd == pytest.approx(an, rel=1e-6)
    rate = float(np.real(np.vdot(E, flow.delta_g(E))))
    assert rate > 0


def test_flow_decreases_loss_and_keeps_metric_positive(points):
    train, test = points[:60], points[60:120]
    cfg = GaussianFlowConfig(s2=0.2, t_max=0.05, n_eval=5, t_first_frac=0.05, rtol=1e-5, tile=10)
    flow = GaussianKahlerFlow(train, cfg, test)
    res = flow.run()
    assert res.message == "reached t_max" and res.reached_t == pytest.approx(0.05)
    assert np.all(np.diff(res.loss) < 0) and res.loss[-1] < 0.5 * res.loss[0]
    assert res.sigma_train[-1] < res.sigma_train[0]
    assert np.all(np.isfinite(res.sigma_test))
    assert np.all(np.real(np.linalg.det(flow.metric(res.state))) > 0)
    # S stays Hermitian, so φ is real
    np.testing.assert_allclose(res.state, np.conj(np.swapaxes(res.state, 1, 2)), atol=1e-14)


def test_ntk_spectrum_matches_dense_gram(points):
    train = points[:40]
    flow = GaussianKahlerFlow(train, GaussianFlowConfig(s2=0.2, tile=8))
    A = flow.ntk_operator().matmat(np.eye(40))
    np.testing.assert_allclose(A, A.T, atol=1e-12 * np.abs(A).max())
    dense = np.sort(np.linalg.eigvalsh(A))[::-1]
    lead, rates = flow.ntk_spectrum(k=5, tol=1e-12)
    np.testing.assert_allclose(lead, dense[:5], rtol=1e-8)
    np.testing.assert_allclose(rates, 2 * lead)
    assert dense[-1] > -1e-10 * dense[0]


def test_pack_roundtrip_and_bad_input(points):
    H = _herm(np.random.default_rng(4), 5, 3)
    np.testing.assert_allclose(unpack_hermitian(pack_hermitian(H), 3), H)
    with pytest.raises(ValueError, match="s2"):
        GaussianFlowConfig(s2=-1.0)
    with pytest.raises(ValueError, match="loss"):
        GaussianFlowConfig(loss="mse")
    with pytest.raises(ValueError, match="method"):
        GaussianFlowConfig(method="LSODA")
    with pytest.raises(ValueError, match="max_seconds"):
        GaussianFlowConfig(max_seconds=0)
    assert GaussianFlowConfig(max_seconds=math.inf).max_seconds == math.inf
    with pytest.raises(TypeError, match="train"):
        GaussianKahlerFlow(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="points"):
        kernel_operator(KahlerMetricKernel(ProjectiveGaussian(0.2), 5, 3), np.asarray(points.points[:3]), backend="jax")
    with pytest.raises(ValueError, match="dim"):
        KahlerMetricKernel(ProjectiveGaussian(0.2), 5, 5)


def test_keops_backend_refuses_with_the_kernels_own_message(points):
    """No KeOps form: the error says so and names the backend to use (not a compiler problem)."""
    x = kahler_points(points[:10])
    op = kernel_operator(KahlerMetricKernel(ProjectiveGaussian(0.2), 5, 3), x, backend="keops")
    with pytest.raises(NotImplementedError, match="backend='jax'"):
        op.mv(np.ones(op.shape[1], dtype=complex))
