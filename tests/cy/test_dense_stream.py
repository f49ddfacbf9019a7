"""The memory-lean dense path (``--dense-chunk``): streamed J₀ and whitened Hessians, the QR whitening and the
chunked normal equations, each against the in-memory reference computed from all Hessians at once."""
import numpy as np
import pytest

import ntkflow  # noqa: F401
from ntkflow.cy import BergmanMethod, CYConfig, DataConfig, LMSettings, OutputConfig, algebra, basis, run_cy
from ntkflow.cy import gauss_newton as gn
from ntkflow.manifolds import preset, sample
from ntkflow.solvers.least_squares import DenseSolve, LMConfig, NormalEquations, levenberg_marquardt


@pytest.fixture(scope="module")
def case():
    m = preset("fermat-quintic")
    ps = sample(m, 600, seed=5)
    b = basis.invariant_basis(5, 7, basis.detect_symmetry(m.exponents, m.coefficients))
    hess = algebra.pair_hessians(b, ps.points, ps.jacobian)  # (n, p, 9), the in-memory reference
    g0 = algebra.pack(algebra.fs_pulled(ps.points, ps.jacobian))
    prob = gn.MAProblem(g0=g0, hess=hess, log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    return ps, b, prob


def _wgram(j, w):
    return (j * w[:, None]).T @ j / len(j)


def test_streamed_jacobian0_equals_the_jacobian_of_all_hessians(case):
    ps, b, prob = case
    j0 = gn.jacobian0_rows(b, ps.points, ps.jacobian, chunk=128)  # 5 chunks, the last one short
    ref = prob.jacobian(np.zeros(prob.n_params))[:, :-1]
    assert j0.shape == ref.shape
    np.testing.assert_allclose(j0, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_qr_whitening_is_orthonormal_in_the_mc_inner_product_and_spans_the_svd_whitened_space(case):
    ps, b, prob = case
    j0 = prob.jacobian(np.zeros(prob.n_params))[:, :-1]
    t_new, spectrum = gn.whitening_qr(j0, ps.weights, rtol=1e-10)
    t_old = gn.whitening(prob, rtol=1e-10)
    w = prob.weights  # normalised to mean 1
    a_new, a_old = j0 @ t_new, j0 @ t_old
    # orthonormal: (J₀T)ᵀW(J₀T)/n = I
    np.testing.assert_allclose(_wgram(a_new, w), np.eye(t_new.shape[1]), rtol=0, atol=1e-10)
    # the same number of directions, and the same space: the W-projection of each new column on the old
    # orthonormal columns leaves a residual ≤ 1e-10 (P = old-coordinates of the new columns is orthogonal)
    assert t_new.shape == t_old.shape
    assert t_new.shape[1] < b.n_functions  # constants and multiples of Q dropped
    coords = (a_old * w[:, None]).T @ a_new / len(w)  # (q, q)
    resid = a_new - a_old @ coords
    assert np.sqrt(np.max(np.mean(w[:, None] * resid ** 2, axis=0))) < 1e-10
    np.testing.assert_allclose(coords.T @ coords, np.eye(t_new.shape[1]), rtol=0, atol=1e-10)
    # the reported spectrum is that of the column-scaled W^{1/2}J₀ (singular values / max, descending)
    sc = np.sqrt(np.mean(w[:, None] * j0 * j0, axis=0))
    ref = np.linalg.svd(j0 / sc * np.sqrt(w / len(w))[:, None], compute_uv=False)
    np.testing.assert_allclose(spectrum[:t_new.shape[1]], (ref / ref[0])[:t_new.shape[1]], rtol=1e-10)


def test_streamed_whitened_hessians_equal_the_transformed_hessians(case):
    ps, b, prob = case
    t, _ = gn.whitening_qr(prob.jacobian(np.zeros(prob.n_params))[:, :-1], ps.weights)
    streamed = gn.whitened_hessians(b, ps.points, ps.jacobian, t, chunk=256)
    ref = gn.transform_basis(prob.hess, t)
    np.testing.assert_allclose(streamed, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_chunked_normal_equations_equal_the_dense_ones(case):
    ps, b, prob = case
    rng = np.random.default_rng(3)
    t, _ = gn.whitening_qr(prob.jacobian(np.zeros(prob.n_params))[:, :-1], ps.weights)
    hw = gn.transform_basis(prob.hess, t)
    pw = gn.MAProblem(g0=prob.g0, hess=hw, log_omega=prob.log_omega, weights=ps.weights, dim=3)
    theta = np.r_[0.02 * rng.normal(size=pw.n_params - 1), 0.3]
    r, inv = pw.residual(theta)
    j = pw.jacobian(theta, inv)  # (n, p + 1), the dense reference
    a_ref, b_ref = _wgram(j, pw.weights), (j * pw.weights[:, None]).T @ r / len(r)
    ne = pw.normal_equations(theta, chunk=97)  # chunks that do not divide n
    assert isinstance(ne, NormalEquations)
    a = ne.gram.to_dense()
    np.testing.assert_allclose(a, a_ref, rtol=0, atol=1e-12 * np.abs(a_ref).max())
    np.testing.assert_allclose(ne.grad, b_ref, rtol=0, atol=1e-12 * np.abs(b_ref).max())
    np.testing.assert_allclose(ne.diag, np.diag(a_ref), rtol=1e-12)
    # the same Levenberg–Marquardt fit from the normal equations as from J (DenseSolve accepts both)
    chunked = gn.MAProblem(g0=prob.g0, hess=hw, log_omega=prob.log_omega, weights=ps.weights, dim=3, chunk=97)
    cfg = LMConfig(max_iter=6, gtol=1e-12, scaling="identity")
    res_ref = levenberg_marquardt(pw, cfg, solve=DenseSolve())
    res = levenberg_marquardt(chunked, cfg, solve=DenseSolve())
    np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in res_ref.history], rtol=1e-10)
    np.testing.assert_allclose(res.value, res_ref.value, rtol=0, atol=1e-10 * np.abs(res_ref.value).max())
    assert res.history[-1]["loss"] < 1e-2 * res.history[0]["loss"]


def test_bad_chunk_and_weights_are_refused_with_the_value(case):
    ps, b, prob = case
    with pytest.raises(ValueError, match="chunk: .*received 0"):
        gn.MAProblem(g0=prob.g0, hess=prob.hess, log_omega=prob.log_omega, weights=ps.weights, dim=3, chunk=0)
    with pytest.raises(ValueError, match=r"weights: expected shape \(600,\)"):
        gn.whitening_qr(np.ones((600, 4)), np.ones(5))


def test_extended_precision_hessians_agree_with_float64_and_are_numpy_only(case):
    ps, b, prob = case
    sl = slice(0, 40)
    ext = algebra.pair_hessians(b, ps.points[sl], ps.jacobian[sl], backend="numpy", extended=True, chunk=16)
    assert ext.dtype == np.longdouble and ext.shape == prob.hess[sl].shape
    # the float64 sums differ from the extended ones by round-off only
    np.testing.assert_allclose(ext.astype(np.float64), prob.hess[sl], rtol=0, atol=1e-13 * np.abs(prob.hess).max())
    with pytest.raises(ValueError, match="extended: .*backend='numpy'"):
        algebra.pair_hessians(b, ps.points[sl], ps.jacobian[sl], extended=True)


def test_the_job_with_dense_chunk_fits_the_same_metric_as_the_default_dense_path():
    def cfg(chunk):
        return CYConfig(DataConfig(n_train=700, n_test=500, seed=2), BergmanMethod(k=6, solver="dense", dense_chunk=chunk),
                        LMSettings(max_iter=4), OutputConfig(n_curvature=0))

    ref = run_cy(cfg(0), None, quiet=True)
    got = run_cy(cfg(128), None, quiet=True)
    assert got.metrics["method_info"]["n_kept"] == ref.metrics["method_info"]["n_kept"]
    # the whitened bases differ by signs/round-off only and LM (identity scaling) is invariant under that rotation
    np.testing.assert_allclose([h["loss"] for h in got.history], [h["loss"] for h in ref.history], rtol=1e-9)
    np.testing.assert_allclose(got.metrics["sigma_test"], ref.metrics["sigma_test"], rtol=1e-8)
    assert got.metrics["sigma_test"] < 0.2 * got.metrics["fs_baseline"]["sigma_test"]
    # the default keeps earlier fingerprints; the streamed run has its own
    assert cfg(0).fingerprint() == CYConfig(cfg(0).data, BergmanMethod(k=6, solver="dense"), cfg(0).lm,
                                            cfg(0).output).fingerprint()
    assert cfg(128).fingerprint() != cfg(0).fingerprint()
    with pytest.raises(ValueError, match="dense_chunk: .*received -1"):
        BergmanMethod(dense_chunk=-1)
    with pytest.raises(ValueError, match="dense_chunk: .*matrix-free"):
        BergmanMethod(dense_chunk=64, solver="matrix-free")


def test_streamed_dense_path_on_a_complete_intersection_equals_the_in_memory_one(tmp_path):
    """``ntkflow cy --manifold bicubic --psi 0.5 -k 3 --dense-chunk 256`` (multi-degree functions, reference FS of the
    class Σ (k_a/k) J_a) against the same job without streaming: the same directions kept and the same held-out σ
    (the streamed J₀ and whitened Hessians equal the in-memory ones; QR instead of SVD whitening). A hypersurface
    reference metric (fs_pulled of all coordinates) in the streamed J₀ would change J₀ and fail this."""
    import json

    from ntkflow.cli import main
    from ntkflow.cy.algebra import Factors
    from ntkflow.manifolds.cicy import cicy_preset, sample_cicy

    common = ["cy", "--manifold", "bicubic", "--psi", "0.5", "-k", "3", "--n-train", "1500", "--n-test", "800",
              "--solver", "dense", "--n-curvature", "0", "-q"]
    assert main(common + ["-o", str(tmp_path / "a")]) == 0
    assert main(common + ["--dense-chunk", "256", "-o", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert b["solver"] == "dense" and b["sigma_test"] < 0.2 * b["fs_baseline"]["sigma_test"]
    assert abs(b["sigma_test"] - a["sigma_test"]) <= 1e-6 * a["sigma_test"] + 1e-9
    # the streamed J₀ with factors equals tr(g⁻¹ G_a) from all Hessians at once, with g = FS of the class (k_a/k)
    m = cicy_preset("bicubic", psi=0.5)
    ps = sample_cicy(m, 300, seed=3)
    f = Factors((3, 3), (1, 1))
    bas = basis.invariant_basis(m.n_coords, 2, basis.no_symmetry(m.n_coords), exponents=f.exponents())
    t_cls = np.array([0.5, 0.5])
    j0 = gn.jacobian0_rows(bas, ps.points, ps.jacobian, chunk=128, factors=f, kahler_class=t_cls)
    hess = algebra.pair_hessians(bas, ps.points, ps.jacobian, factors=f)
    prob = gn.MAProblem(g0=algebra.pack(f.fs_sum(ps.points, ps.jacobian, t_cls)), hess=hess,
                        log_omega=np.log(ps.omega_sq), weights=ps.weights, dim=3)
    ref = prob.jacobian(np.zeros(prob.n_params))[:, :-1]
    np.testing.assert_allclose(j0, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    w = gn.whitened_hessians(bas, ps.points, ps.jacobian, np.eye(bas.n_functions)[:, :5], chunk=100, factors=f)
    np.testing.assert_allclose(w, hess[:, :5], rtol=0, atol=1e-14 * np.abs(hess).max())
    with pytest.raises(ValueError, match="factors, kahler_class: pass both"):
        gn.jacobian0_rows(bas, ps.points, ps.jacobian, factors=f)
