"""The talk's literal infinite-width Kähler potential flow with the Gaussian projective kernel, in dual form.

Kernel Θ(z, w) = exp((u − 1)/s²), u = |⟨z, w⟩|²/(|z|²|w|²) (:class:`ntkflow.engine.ProjectiveGaussian`).
Metric g = g_FS + ∂∂̄φ pulled back to X (g_FS = (1/π)∂∂̄log|z|², the repository's convention; φ here is
(1/π) times the φ of :mod:`ntkflow.cy.job`). Loss over the training points x (weights w_x, n points)

    L = Σ_x ŵ_x ℓ(g_x),  ŵ = w/Σw (the weighted mean),   ℓ = (log det g − log|Ω|² − c)²   (``loss="log"``)
                                 ℓ = (1 − η/κ)², η = det g/|Ω|²  (``loss="sigma2"``, the talk's l_σ squared)

with the constant c (resp. κ) set to its optimal value at every instant (profiled out, so it carries no
gradient). The improved potential flow of the talk, Θ_{kl̄} = ∂_k∂̄_lΘ acting on δL/δg, is the RKHS
gradient flow of L:

    dφ(x)/dt = −Σ_{x'} Σ_{kl} ∂̄'_k∂'_l Θ(x, x') E_{kl}(x'),   E(x') = δL/δg(x')

(E Hermitian; for ``log`` E = 2 ŵ r g^{-1} with r = log det g − log|Ω|² − c; for ``sigma2``
E = −2 ŵ r (η/κ) g^{-1} with r = 1 − η/κ). Hence φ_t = Σ_{x'} Σ_kl S_kl(x') ∂̄'_k∂'_lΘ(·, x') with the
state S (n × d × d Hermitian, S(0) = 0) obeying

    dS/dt = −E(g_S),   g_S(x) = g_FS(x) + Σ_{x'} K(x, x') S(x'),   K = ∂_a∂̄_b∂̄'_k∂'_l Θ pulled back

where K is :class:`ntkflow.engine.kernels.kahler.KahlerMetricKernel` applied lazily (tiled JAX backend,
never an n × n matrix). Each ODE right-hand side is one operator product over the n training points;
the ODE is integrated with ``scipy.integrate.solve_ivp`` (explicit RK: an implicit method would need
n·d² RHS per Jacobian). Linearised at S (log loss), the residual modes decay at rates 2λ_i, λ_i the
eigenvalues of the metric-NTK Gram Ŵ^{1/2} J K J* Ŵ^{1/2} (J δg = tr(g^{-1} δg), Ŵ = diag ŵ); :meth:`GaussianKahlerFlow.ntk_spectrum`
computes the leading ones by Lanczos (``eigsh``) on a LinearOperator wrapping the lazy operator.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import positive_float, positive_int, time_budget
from ntkflow.engine import ProjectiveGaussian, kernel_operator
from ntkflow.engine.kernels.kahler import KahlerMetricKernel, f_derivative, kahler_points
from ntkflow.manifolds import PointSet, fs_pullback, sample, sigma_weighted

__all__ = ["GaussianFlowConfig", "GaussianFlowResult", "GaussianKahlerFlow", "pack_hermitian",
           "unpack_hermitian", "run_gaussian_flow"]

LOSSES = ("log", "sigma2")
METHODS = ("RK23", "RK45", "DOP853")


def pack_hermitian(H: np.ndarray) -> np.ndarray:
    """(n, d, d) Hermitian → (n·d²,) real: [diag, Re upper, Im upper] per point (a chart of Herm(d))."""
    H = np.asarray(H)
    d = H.shape[-1]
    iu = np.triu_indices(d, 1)
    return np.concatenate([np.real(np.diagonal(H, axis1=1, axis2=2)), H[:, iu[0], iu[1]].real,
                           H[:, iu[0], iu[1]].imag], axis=1).reshape(-1)


def unpack_hermitian(v: np.ndarray, d: int) -> np.ndarray:
    """Inverse of :func:`pack_hermitian`: (n·d²,) real → (n, d, d) complex Hermitian."""
    v = np.asarray(v, dtype=np.float64).reshape(-1, d * d)
    n = v.shape[0]
    iu = np.triu_indices(d, 1)
    m = len(iu[0])
    H = np.zeros((n, d, d), dtype=np.complex128)
    H[:, np.arange(d), np.arange(d)] = v[:, :d]
    up = v[:, d : d + m] + 1j * v[:, d + m :]
    H[:, iu[0], iu[1]] = up
    H[:, iu[1], iu[0]] = up.conj()
    return H


@dataclass(frozen=True)
class GaussianFlowConfig:
    """Settings of the literal Gaussian-kernel flow.

    Args:
        s2: s² of the kernel exp((u − 1)/s²) (> 0).
        loss: "log" ((log η − c)², default) or "sigma2" ((1 − η/κ)²).
        t_max: final flow time; checkpoints (loss, σ) at 0 and ``n_eval`` log-spaced times in
            [t_max·t_first_frac, t_max].
        n_eval, t_first_frac: checkpoint grid.
        method: explicit solve_ivp method ("RK23" default, "RK45", "DOP853").
        rtol, atol: solve_ivp tolerances (the state is S, packed real).
        max_seconds: wall budget; integration stops at the first checkpoint past it (reported).
        tile: rows per JAX tile (16 is fastest on one CPU core; None: the backend's choice).
    """

    s2: float = 0.2
    loss: str = "log"
    t_max: float = 1e3
    n_eval: int = 16
    t_first_frac: float = 1e-4
    method: str = "RK23"
    rtol: float = 1e-3
    atol: float = 1e-8
    max_seconds: float = math.inf
    tile: int | None = 16

    def __post_init__(self):
        object.__setattr__(self, "s2", positive_float("s2", self.s2))
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, received {self.loss!r}.")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS} (explicit; implicit methods need n·d² RHS per "
                             f"Jacobian), received {self.method!r}.")
        object.__setattr__(self, "t_max", positive_float("t_max", self.t_max))
        object.__setattr__(self, "n_eval", positive_int("n_eval", self.n_eval))
        f = positive_float("t_first_frac", self.t_first_frac)
        if f > 1:
            raise ValueError(f"t_first_frac: must be in (0, 1], received {self.t_first_frac!r}.")
        object.__setattr__(self, "rtol", positive_float("rtol", self.rtol))
        object.__setattr__(self, "atol", positive_float("atol", self.atol))
        object.__setattr__(self, "max_seconds", time_budget("max_seconds", self.max_seconds))
        if self.tile is not None:
            object.__setattr__(self, "tile", positive_int("tile", self.tile))


@dataclass(frozen=True)
class GaussianFlowResult:
    """History of a flow run: per checkpoint time t, loss, σ on training and held-out points, the RHS
    count and wall seconds so far; ``state`` is the final S (n, d, d)."""

    times: np.ndarray
    loss: np.ndarray
    sigma_train: np.ndarray
    sigma_test: np.ndarray
    nfev: np.ndarray
    seconds: np.ndarray
    state: np.ndarray
    reached_t: float
    message: str
    config: GaussianFlowConfig = field(repr=False, default=None)

    def to_json(self) -> dict:
        return {"times": self.times.tolist(), "loss": self.loss.tolist(), "sigma_train": self.sigma_train.tolist(),
                "sigma_test": self.sigma_test.tolist(), "nfev": self.nfev.tolist(), "seconds": self.seconds.tolist(),
                "reached_t": self.reached_t, "message": self.message}


class GaussianKahlerFlow:
    """The frozen-kernel flow dS/dt = −E(g_S) on a training ``PointSet`` (see the module docstring).

    Args:
        train: training points (``ntkflow.manifolds.PointSet``).
        config: :class:`GaussianFlowConfig`.
        test: optional held-out points for σ (metric there = g_FS + K(test, train) S).
    """

    def __init__(self, train, config: GaussianFlowConfig = GaussianFlowConfig(), test=None):
        if not isinstance(train, PointSet):
            raise TypeError(f"train: expected a PointSet (ntkflow.manifolds.sample), received {type(train).__name__}.")
        if test is not None and not isinstance(test, PointSet):
            raise TypeError(f"test: expected a PointSet or None, received {type(test).__name__}.")
        if not isinstance(config, GaussianFlowConfig):
            raise TypeError(f"config: expected a GaussianFlowConfig, received {type(config).__name__}.")
        self.config = config
        self.train, self.test = train, test
        m = train.manifold
        self.d = m.dim
        self.kernel = KahlerMetricKernel(ProjectiveGaussian(config.s2), m.n_coords, m.dim)
        opts = {} if config.tile is None else {"tile": config.tile}
        self._xtr = kahler_points(train)
        self.op = kernel_operator(self.kernel, self._xtr, backend="jax", **opts)
        self.g0 = fs_pullback(train)
        self.w = np.asarray(train.weights, dtype=np.float64)
        self.wn = self.w / np.sum(self.w)  # ŵ
        self.log_omega = np.log(train.omega_sq)
        self.n = len(train)
        self.nfev = 0
        if test is not None:
            self.op_test = kernel_operator(self.kernel, kahler_points(test), self._xtr, backend="jax", **opts)
            self.g0_test = fs_pullback(test)

    # -- metric and loss ------------------------------------------------------------------------
    def delta_g(self, S: np.ndarray, op=None) -> np.ndarray:
        """δg = K S at the operator's row points: (rows, d, d) complex (one lazy matvec)."""
        op = self.op if op is None else op
        d = self.d
        out = op.mv(np.asarray(S, dtype=np.complex128).reshape(-1))
        return out.reshape(-1, d, d)

    def metric(self, S: np.ndarray) -> np.ndarray:
        """Pulled-back g_S at the training points (n, d, d)."""
        g = self.g0 + self.delta_g(S)
        return 0.5 * (g + np.conj(np.swapaxes(g, 1, 2)))

    def _terms(self, g):
        """(ℓ per point, E (n, d, d)) or (None, None) when g is not positive definite."""
        try:
            ch = np.linalg.cholesky(g)
        except np.linalg.LinAlgError:
            return None, None
        ld = 2.0 * np.sum(np.log(np.real(np.diagonal(ch, axis1=1, axis2=2))), axis=1)
        ginv = np.linalg.inv(g)
        w = self.wn
        if self.config.loss == "log":
            x = ld - self.log_omega
            r = x - np.sum(w * x)  # optimal c = ⟨log η⟩_w
            coef = 2.0 * w * r
        else:
            eta = np.exp(ld - self.log_omega)
            c = np.sum(w * eta) / np.sum(w * eta * eta)  # optimal 1/κ
            r = 1.0 - c * eta
            coef = 2.0 * w * r * (-c * eta)
        ell = r * r
        return ell, coef[:, None, None] * ginv

    def loss_of_state(self, S) -> float:
        ell, _ = self._terms(self.metric(S))
        return math.inf if ell is None else float(np.sum(self.wn * ell))

    def gradient(self, S) -> np.ndarray:
        """E(g_S) = δL/δg at the training points (n, d, d) Hermitian: the RKHS gradient of L in S-coordinates
        (⟨E, K δS⟩_F is the derivative of L along δS)."""
        _, E = self._terms(self.metric(S))
        if E is None:
            raise ValueError("S: the metric g_S is not positive definite at every training point.")
        return E

    def rhs(self, t, y):
        """solve_ivp right-hand side on the packed state: −pack(E(g_S)); NaN where g_S is not PD (the
        step is then rejected and shortened)."""
        self.nfev += 1
        S = unpack_hermitian(y, self.d)
        _, E = self._terms(self.metric(S))
        if E is None:
            return np.full_like(y, np.nan)
        return -pack_hermitian(E)

    def sigma(self, S, which: str = "train") -> float:
        """Held-out (``which="test"``) or training σ = E_w|1 − η/⟨η⟩_w| of g_S."""
        if which == "train":
            g, ps = self.metric(S), self.train
        elif which == "test":
            if self.test is None:
                raise ValueError("which: 'test' needs held-out points; pass test= to GaussianKahlerFlow.")
            g = self.g0_test + self.delta_g(S, self.op_test)
            ps = self.test
        else:
            raise ValueError(f"which: expected 'train' or 'test', received {which!r}.")
        det = np.real(np.linalg.det(g))
        if np.any(det <= 0):
            return float("nan")
        return sigma_weighted(det / ps.omega_sq, ps.weights)

    # -- the potential (for checks) -------------------------------------------------------------
    def potential(self, S, points) -> np.ndarray:
        """φ(z) = Σ_{x'} Σ_kl S_kl(x') ∂̄'_k∂'_lΘ(z, x') at homogeneous points (m, N) (closed form
        Φ = h(u) b/(ZW) − u f'(u) τ/W of :mod:`ntkflow.engine.kernels.kahler`, one JAX pass)."""
        import jax.numpy as jnp

        N, d = self.train.manifold.n_coords, self.d
        z = jnp.asarray(np.asarray(points, dtype=np.complex128))
        w = jnp.asarray(self.train.points)
        Pw = jnp.asarray(self.train.jacobian)
        S = jnp.asarray(np.asarray(S, dtype=np.complex128).reshape(-1, d, d))
        St = jnp.einsum("jkK,jkl,jlL->jKL", Pw.conj(), S, Pw)
        W = jnp.sum(jnp.abs(w) ** 2, -1)
        Q = jnp.eye(N)[None] - w[:, :, None] * w.conj()[:, None, :] / W[:, None, None]
        M = jnp.einsum("jAK,jAB,jBL->jKL", Q, St, Q.conj())
        tau = jnp.einsum("jKK->j", St) - jnp.einsum("jK,jKL,jL->j", w, St, w.conj()) / W
        Z = jnp.sum(jnp.abs(z) ** 2, -1)
        p = z @ w.conj().T
        s = 1.0 / (Z[:, None] * W[None, :])
        u = jnp.abs(p) ** 2 * s
        base = self.kernel.base
        f1, f2 = f_derivative(base, u, 1), f_derivative(base, u, 2)
        b = jnp.einsum("iK,jKL,iL->ij", z, M, z.conj())
        phi = (u * f2 + f1) * b * s - u * f1 * (tau / W)[None, :]
        return np.asarray(jnp.real(jnp.sum(phi, 1)))

    # -- integration ----------------------------------------------------------------------------
    def run(self, *, log=None) -> GaussianFlowResult:
        """Integrate from S = 0 over the checkpoint grid with solve_ivp, segment by segment (so the wall
        budget ``max_seconds`` can stop it between checkpoints)."""
        from scipy.integrate import solve_ivp

        cfg = self.config
        grid = np.r_[0.0, np.geomspace(cfg.t_max * cfg.t_first_frac, cfg.t_max, cfg.n_eval)]
        y = np.zeros(self.n * self.d * self.d)
        self.nfev = 0
        t0 = time.perf_counter()
        rec = {k: [] for k in ("times", "loss", "sigma_train", "sigma_test", "nfev", "seconds")}

        def record(t, y):
            S = unpack_hermitian(y, self.d)
            rec["times"].append(float(t))
            rec["loss"].append(self.loss_of_state(S))
            rec["sigma_train"].append(self.sigma(S, "train"))
            rec["sigma_test"].append(self.sigma(S, "test") if self.test is not None else float("nan"))
            rec["nfev"].append(self.nfev)
            rec["seconds"].append(time.perf_counter() - t0)
            if log:
                log(f"  t {t:10.4g}  loss {rec['loss'][-1]:.5e}  σ train {rec['sigma_train'][-1]:.5f}  "
                    f"σ held-out {rec['sigma_test'][-1]:.5f}  RHS {self.nfev:6d}  {rec['seconds'][-1]:7.1f} s")

        record(0.0, y)
        message = "reached t_max"
        first_step = None
        for ta, tb in zip(grid[:-1], grid[1:]):
            fs = None if first_step is None else min(first_step, tb - ta)
            sol = solve_ivp(self.rhs, (ta, tb), y, method=cfg.method, rtol=cfg.rtol, atol=cfg.atol, first_step=fs)
            if not sol.success:
                message = f"solve_ivp stopped at t = {sol.t[-1]:.4g}: {sol.message}"
                y = sol.y[:, -1]
                record(sol.t[-1], y)
                break
            y = sol.y[:, -1]
            if len(sol.t) > 1:  # restart the next segment with the last accepted step
                first_step = float(sol.t[-1] - sol.t[-2])
            record(tb, y)
            if time.perf_counter() - t0 > cfg.max_seconds:
                message = f"wall budget max_seconds={cfg.max_seconds:g} spent at t = {tb:.4g}"
                break
        return GaussianFlowResult(
            times=np.asarray(rec["times"]), loss=np.asarray(rec["loss"]),
            sigma_train=np.asarray(rec["sigma_train"]), sigma_test=np.asarray(rec["sigma_test"]),
            nfev=np.asarray(rec["nfev"]), seconds=np.asarray(rec["seconds"]),
            state=unpack_hermitian(y, self.d), reached_t=float(rec["times"][-1]), message=message, config=cfg)

    # -- spectrum -------------------------------------------------------------------------------
    def ntk_operator(self, S=None):
        """The metric-NTK Gram A = Ŵ^{1/2} J K J* Ŵ^{1/2} on the training points as a scipy
        LinearOperator (n × n real symmetric PSD; J δg = tr(g_S^{-1} δg), J* r = r g_S^{-1})."""
        from scipy.sparse.linalg import LinearOperator

        S = np.zeros((self.n, self.d, self.d), complex) if S is None else S
        ginv = np.linalg.inv(self.metric(S))
        sw = np.sqrt(self.wn)

        def mv(v):
            v = np.ravel(v).real
            dg = self.delta_g((sw * v)[:, None, None] * ginv)
            return sw * np.real(np.einsum("xlk,xkl->x", ginv, dg))

        return LinearOperator((self.n, self.n), matvec=mv, dtype=np.float64)

    def ntk_spectrum(self, S=None, *, k: int = 10, tol: float = 1e-6):
        """Leading k eigenvalues of the metric-NTK Gram (Lanczos, ``eigsh`` on :meth:`ntk_operator`), sorted
        descending, and the per-mode rates 2λ they predict for the linearised flow (log loss)."""
        from scipy.sparse.linalg import eigsh

        k = positive_int("k", k)
        if k >= self.n:
            raise ValueError(f"k: must be < the number of training points {self.n}, received {k}.")
        lead = np.sort(eigsh(self.ntk_operator(S), k=k, which="LA", tol=tol, return_eigenvectors=False))[::-1]
        return lead, 2.0 * lead


def run_gaussian_flow(manifold, n_train: int, n_test: int, config: GaussianFlowConfig = GaussianFlowConfig(), *,
                      seed: int = 0, log=None):
    """Sample n_train + n_test points (seed), build the flow and run it; returns (flow, result)."""
    n_train = positive_int("n_train", n_train)
    n_test = positive_int("n_test", n_test)
    ps = sample(manifold, n_train + n_test, seed=seed, progress=False)
    train, test = ps.split(n_train)
    flow = GaussianKahlerFlow(train, config, test)
    return flow, flow.run(log=log)
