"""The host Gauss–Newton products of the matrix-free primal problem on a complete intersection (the bicubic,
multi-degree sections, log link, whitened) against central finite differences of its residual r(θ):
J V, Jᵀ U and the Jacobi diagonal mean_x w_x (∂r_x/∂θ_j)² — over several row blocks and Jacobi chunks, in
float64 and in float32 products (to single precision)."""
from __future__ import annotations

import numpy as np
import pytest

from ntkflow.cy.algebra import Factors
from ntkflow.cy.matrixfree import PrimalProblem
from ntkflow.manifolds.cicy import cicy_preset, sample_cicy


@pytest.fixture(scope="module")
def bicubic():
    """A random bicubic at k = (1, 1): 9 sections, 81 real parameters; θ a random point near the start."""
    ps = sample_cicy(cicy_preset("bicubic", seed=0), 700, seed=4)
    f = Factors((3, 3), (1, 1))
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1, link="log", factors=f)
    rng = np.random.default_rng(7)
    theta = prob.initial() + np.r_[0.05 * rng.standard_normal(prob.n_params - 1), 0.0]
    eps = 1e-6
    cols = []
    for j in range(prob.n_params):  # (n, p): the Jacobian by central differences of the residual alone
        e = np.zeros(prob.n_params)
        e[j] = eps
        cols.append((prob.residual(theta + e)[0] - prob.residual(theta - e)[0]) / (2 * eps))
    return ps, f, theta, np.stack(cols, axis=1)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-6), ("float32", 1e-4)])
def test_products_and_jacobi_diagonal_equal_the_finite_difference_jacobian(bicubic, dtype, rtol):
    ps, f, theta, J_fd = bicubic
    # block = 64: the host products run over 256-row blocks (three of them on 700 points)
    prob = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1, link="log", factors=f,
                         product_dtype=dtype, block=64)
    lin = prob.linearise(theta)
    rng = np.random.default_rng(11)
    V = rng.standard_normal((prob.n_params, 3))
    U = rng.standard_normal((prob.n, 3))
    JV, JtU = J_fd @ V, J_fd.T @ U
    np.testing.assert_allclose(lin.J.mm(V), JV, rtol=0, atol=rtol * np.abs(JV).max())
    np.testing.assert_allclose(lin.J.T.mm(U), JtU, rtol=0, atol=rtol * np.abs(JtU).max())
    diag_fd = np.mean(prob.weights[:, None] * J_fd ** 2, axis=0)  # (p,)
    np.testing.assert_allclose(lin.diag, diag_fd, rtol=0, atol=1e-6 * diag_fd.max())
    # one block (the default) gives the same products
    one = PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), 1, link="log", factors=f,
                        product_dtype=dtype).linearise(theta)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(one.J.mm(V), lin.J.mm(V), rtol=0, atol=tol * np.abs(JV).max())
    np.testing.assert_allclose(one.J.T.mm(U), lin.J.T.mm(U), rtol=0, atol=tol * np.abs(JtU).max())
    # the Jacobi diagonal in many small chunks equals the one-chunk sum
    np.testing.assert_allclose(prob.jacobi_diag(theta, chunk=37), lin.diag, rtol=1e-12, atol=1e-15 * diag_fd.max())
