"""Matrix-free Gauss–Newton of the primal u^k problem on a dask.distributed cluster (issue #12).

The training points are split into blocks b = 0, 1, …, B−1 of ``block_size`` points (the last one
shorter). Block b is *sampled on a worker* by :func:`ntkflow.manifolds.sample` with the seed
:func:`block_seed` (seed, b) — a ``numpy.random.SeedSequence([seed, 0, b])`` stream — so the point set is
fixed by (seed, n_points, block_size) and does not depend on how many workers there are;
:func:`sample_blocks` builds the same union in one process (the single-process reference,
:func:`reference_problem`).

Every block is a :class:`ntkflow.cy.matrixfree.PrimalProblem` on its points with the *global* whitening
M and weight mean, built and kept on its worker (or rebuilt from the points in every task:
``keep_features=False``); the formulas are PrimalProblem's. With W the weights normalised to mean 1 over
all n points, the driver sees only parameter-sized sums over blocks:

    G = Σ_b Σ_{x∈b} w_x s s† |z|^{-2k} / Σ_x w_x                         (whitening Gram, N × N)
    L(θ) = Σ_b Σ_{x∈b} w_x r_x² / n                                       (loss)
    JᵀWr/n = Σ_b J_bᵀ W_b r_b / n,   JᵀWJ V/n = Σ_b J_bᵀ (W_b (J_b V)) / n  (fused on the worker)
    diag(JᵀWJ)/n = Σ_b Σ_{x∈b∩S} w_x (∂r_x/∂θ)² / |S|             (S: PrimalProblem's strided subset)

each a map over blocks and a pairwise tree reduction (fixed order, so the sums do not depend on where the
blocks ran). :meth:`DistributedPrimalProblem.linearise` returns
:class:`ntkflow.solvers.least_squares.NormalEquations`: the step (JᵀWJ/n + λD) δ = −JᵀWr/n is solved by
CGSolve (or DenseSolve) on the driver, which never holds a point. The linearisation state of a block
(r, g⁻¹, the per-point factors) stays on its worker between the CG products.

Faults: every task is a pure function of its inputs with a deterministic key (the points from their seed,
the features from the points, the state from the features and θ; θ and V travel inside the tasks, never as
scattered data), so the results a dead worker held are recomputed by dask from this lineage on another
worker and the step completes with the same numbers. An unreachable scheduler fails within seconds
(:func:`ntkflow.engine.backends.connect_scheduler`).
"""
from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import numpy as np

from ntkflow._checks import positive_float, positive_int
from ntkflow.cy.matrixfree import LINKS, PRODUCT_DTYPES, PrimalProblem, section_gram_sum, whitening_matrix
from ntkflow.cy.problems import ProductOperator
from ntkflow.engine.backends import connect_scheduler, gather_bounded
from ntkflow.manifolds import PointSet, sample
from ntkflow.solvers.least_squares import NormalEquations

__all__ = ["DistributedPrimalProblem", "ClusterSettings", "open_client", "block_seed", "heldout_seed", "block_sizes",
           "sample_block", "sample_blocks", "reference_problem", "peak_memory", "local_client", "connect"]


# ------------------------------------------------------------------------------------------
# the point blocks: a seed per block
# ------------------------------------------------------------------------------------------


def block_seed(seed: int, b: int) -> int:
    """The sampling seed of block ``b``: the first word of ``SeedSequence([seed, 0, b])`` (a non-negative int)."""
    return int(np.random.SeedSequence([int(seed), 0, int(b)]).generate_state(1, np.uint32)[0])


def heldout_seed(seed: int) -> int:
    """The sampling seed of the held-out points of a distributed run (``SeedSequence([seed, 1])``): a stream
    apart from every training block's."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1, np.uint32)[0])


def block_sizes(n_points: int, block_size: int) -> list[int]:
    """Sizes of the blocks of ``n_points`` points: ``block_size`` each, the last one the remainder."""
    n, bs = positive_int("n_points", n_points), positive_int("block_size", block_size)
    return [min(bs, n - lo) for lo in range(0, n, bs)]


def sample_block(manifold, b: int, size: int, *, seed: int) -> PointSet:
    """Block ``b`` (``size`` points) — the same wherever it is drawn. The manifold's smoothness is checked
    with block 0 (:func:`ntkflow.manifolds.sample` raises on a singular one)."""
    return sample(manifold, int(size), seed=block_seed(seed, b), progress=False, check_smooth=int(b) == 0)


def sample_blocks(manifold, n_points: int, *, seed: int, block_size: int) -> PointSet:
    """The union of the blocks in one process, in block order (the training points of a distributed run)."""
    parts = [sample_block(manifold, b, size, seed=seed) for b, size in enumerate(block_sizes(n_points, block_size))]
    cat = lambda key: np.concatenate([getattr(p, key) for p in parts])  # noqa: E731
    return PointSet(cat("points"), cat("weights"), cat("omega_sq"), cat("patch"), cat("elim"), cat("jacobian"),
                    manifold)


def reference_problem(manifold, n_points: int, k: int, *, seed: int, block_size: int, link: str = "log",
                      **kwargs) -> PrimalProblem:
    """The single-process :class:`PrimalProblem` on the same points as a :class:`DistributedPrimalProblem`
    with these settings (the reference of the equality tests)."""
    ps = sample_blocks(manifold, n_points, seed=seed, block_size=block_size)
    return PrimalProblem(ps.points, ps.jacobian, ps.weights, np.log(ps.omega_sq), k, link=link, **kwargs)


# ------------------------------------------------------------------------------------------
# tasks run on the workers (module-level: pickled by reference)
# ------------------------------------------------------------------------------------------


def _task_points(manifold, b, size, seed):
    ps = sample_block(manifold, b, size, seed=seed)
    return {"z": np.asarray(ps.points), "jac": np.asarray(ps.jacobian), "w": np.asarray(ps.weights),
            "log_omega": np.log(ps.omega_sq)}


def _task_gram(pts, k, chunk):
    """(Σ w s s† |z|^{-2k} (N, N), Σ w) of one block (raw weights)."""
    return section_gram_sum(pts["z"], pts["jac"], pts["w"], k, chunk=chunk), float(np.sum(pts["w"]))


def _register_sizeof():
    """Tell dask what a block problem weighs (its arrays): otherwise it counts a few hundred bytes and its
    work stealing moves the features between workers as if they were free."""
    from dask.sizeof import sizeof  # deferred: dask is heavy to import

    @sizeof.register(PrimalProblem)
    def _sizeof_primal(prob):
        return int(sum(getattr(a, "nbytes", 0) for a in vars(prob).values())) + 1024


def _task_problem(pts, spec):
    _register_sizeof()
    k, M, wmean, link, chunk, product_dtype = spec
    return PrimalProblem(pts["z"], pts["jac"], pts["w"], pts["log_omega"], k, chunk=chunk, whiten=M,
                         weight_mean=wmean, link=link, product_dtype=product_dtype)


def _problem(block, spec):
    """A kept block problem, or one rebuilt from the block's points (``keep_features=False``)."""
    return block if isinstance(block, PrimalProblem) else _task_problem(block, spec)


def _task_loss(block, spec, v):
    return _problem(block, spec).loss_sum(v)


def _task_residual_sums(block, spec, v):
    return _problem(block, spec).residual_sums(v)


def _task_state(block, spec, v):
    return _problem(block, spec).linear_state(v)


def _task_grad(block, spec, state):
    return None if state is None else _problem(block, spec).grad_sum(state)


def _task_gram_mm(block, spec, state, V):
    return _problem(block, spec).gram_sum(state, V)


def _task_diag(block, spec, state, idx):
    return None if state is None else _problem(block, spec).jacobi_sum(state, idx)


def _task_sigma_sums(block, spec, v, kappa):
    """(Σ w η, Σ w) when ``kappa`` is None, else Σ w |1 − η/κ|, with η = exp(r + c) = det g/|Ω|² (up to the
    constant e^c) — the two sums of :func:`ntkflow.manifolds.sigma_weighted`; None where infeasible."""
    prob = _problem(block, spec)
    r, _ = prob.residual(v)
    if r is None:
        return None
    eta = np.exp(np.asarray(r) + v[-1])
    w = prob.weights
    return (float(np.sum(w * eta)), float(np.sum(w))) if kappa is None else float(np.sum(w * np.abs(1 - eta / kappa)))


def _add(*parts):
    """Sum of partial results in the order given (floats, arrays or tuples of them); None (infeasible) wins,
    +inf stays."""
    if any(p is None for p in parts):
        return None
    out = parts[0]
    for p in parts[1:]:
        out = tuple(x + y for x, y in zip(out, p)) if isinstance(out, tuple) else out + p
    return out


def _peak_rss_bytes():
    """This process's peak resident memory (``getrusage`` ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# ------------------------------------------------------------------------------------------
# clusters
# ------------------------------------------------------------------------------------------


def local_client(n_workers: int, *, processes: bool = True, threads_per_worker: int = 1):
    """(client, cluster): an embedded ``LocalCluster`` of ``n_workers`` workers (no dashboard). Close both."""
    from distributed import Client, LocalCluster  # deferred: dask is heavy to import

    cluster = LocalCluster(n_workers=positive_int("n_workers", n_workers), threads_per_worker=threads_per_worker,
                           processes=processes, dashboard_address=None)
    return Client(cluster, set_as_default=False), cluster


def connect(address: str, timeout: float = 5.0):
    """A client joined to the scheduler at ``address`` (:func:`ntkflow.engine.backends.connect_scheduler`:
    :class:`ntkflow.engine.SchedulerError` naming the address within about 2·timeout when it cannot be reached)."""
    return connect_scheduler(address, timeout)


@dataclass(frozen=True)
class ClusterSettings:
    """Where the distributed matrix-free method runs (``ntkflow cy --workers N | --scheduler ADDRESS``).

    workers: an embedded LocalCluster of that many worker processes (one thread each); scheduler: join the
    dask scheduler at this address instead (``tcp://host:8786``); block_size: points per block (with the
    seed it fixes the training points); keep_features: keep the blocks' features on the workers (False:
    rebuild them in every task); timeout: seconds for joining a scheduler and per wait slice.
    """

    workers: int | None = None
    scheduler: str | None = None
    block_size: int = 16_384
    keep_features: bool = True
    timeout: float = 5.0

    def __post_init__(self):
        if self.workers is not None and self.scheduler is not None:
            raise ValueError(f"workers, scheduler: give --workers N (an embedded cluster) or --scheduler ADDRESS (an "
                             f"existing one), not both (received {self.workers!r} and {self.scheduler!r}).")
        if self.workers is not None:
            positive_int("workers", self.workers)
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or "://" not in self.scheduler):
            raise ValueError(f"scheduler: expected an address like 'tcp://host:8786', received {self.scheduler!r}.")
        positive_int("block_size", self.block_size)
        if not isinstance(self.keep_features, bool):
            raise TypeError(f"keep_features: expected True or False, received {self.keep_features!r}.")
        positive_float("timeout", self.timeout)

    @property
    def enabled(self) -> bool:
        return self.workers is not None or self.scheduler is not None

    def describe(self) -> str:
        return (f"an embedded LocalCluster of {self.workers} worker processes" if self.workers is not None
                else f"the dask scheduler at {self.scheduler}")


def open_client(settings: ClusterSettings):
    """(client, things to close when done): a LocalCluster for ``settings.workers``, or a client joined to
    ``settings.scheduler`` (:func:`connect`: SchedulerError naming the address within seconds)."""
    if settings.workers is not None:
        client, cluster = local_client(settings.workers)
        return client, [client, cluster]
    if settings.scheduler is not None:
        client = connect(settings.scheduler, settings.timeout)
        return client, [client]
    raise ValueError("settings: neither workers nor scheduler is set; pass --workers N or --scheduler ADDRESS.")


def peak_memory(client=None) -> dict:
    """{"driver_peak_bytes": peak RSS of this process, "worker_peak_bytes": {address: peak RSS}} (workers of
    ``client``; in-process workers report the driver's process)."""
    out = {"driver_peak_bytes": _peak_rss_bytes(), "worker_peak_bytes": {}}
    if client is not None:
        out["worker_peak_bytes"] = {str(a): int(v) for a, v in client.run(_peak_rss_bytes).items()}
    return out


# ------------------------------------------------------------------------------------------
# the problem
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """One linearisation: the blocks' state futures (kept on the workers) and θ."""

    theta: np.ndarray
    states: tuple


class DistributedPrimalProblem:
    """The matrix-free primal Monge–Ampère least squares of :class:`ntkflow.cy.matrixfree.PrimalProblem` on
    ``n_points`` points of ``manifold``, held in blocks on the workers of ``client`` (module docstring).

    Implements :class:`ntkflow.solvers.least_squares.LeastSquaresProblem` with ``weights = None``:
    ``linearise`` returns :class:`NormalEquations`. θ coordinates, :meth:`unvec`, :meth:`monomial_H` and
    ``M`` are PrimalProblem's (``θ`` from here fits the single-process problem on the same points).

    Args:
        client: a ``distributed.Client`` (:func:`local_client`, :func:`connect`, or your own).
        manifold: a Hypersurface; n_points: training points; k: degree.
        seed: sampling seed (block b draws with :func:`block_seed` (seed, b)); block_size: points per block
            (it fixes the point set with seed and n_points; memory per worker ≈ its blocks' features,
            n_b · (2d + 1) · N_k complex numbers: the features and the kept Ỹ of a linearisation).
        link: "identity" or "log" (PrimalProblem's); chunk: PrimalProblem's feature chunk.
        keep_features: True keeps each block's features on its worker; False rebuilds them from the
            block's points in every task (less memory, more time).
        whiten_rtol: relative eigenvalue cut of the whitening; jacobi_max_points: PrimalProblem's strided
            subset of the Jacobi diagonal (the same points as the single-process problem).
        timeout: seconds per wait slice while gathering (:func:`ntkflow.engine.backends.gather_bounded`).
        product_dtype: "float64" or "float32" (PrimalProblem's: the blocks' J V, Jᵀ U in complex64).
    """

    def __init__(self, client, manifold, n_points: int, k: int, *, seed: int = 0, block_size: int = 16_384,
                 link: str = "log", keep_features: bool = True, chunk: int = 4096, whiten_rtol: float = 1e-10,
                 jacobi_max_points: int | None = 20_000, timeout: float = 10.0, product_dtype: str = "float64"):
        from dask.base import tokenize  # deferred: dask is heavy to import

        _register_sizeof()

        if client is None or not hasattr(client, "submit"):
            raise TypeError(f"client: expected a distributed.Client (local_client(n) or connect(address)), "
                            f"received {type(client).__name__}.")
        if link not in LINKS:
            raise ValueError(f"link: expected one of {LINKS}, received {link!r}.")
        if product_dtype not in PRODUCT_DTYPES:
            raise ValueError(f"product_dtype: expected one of {PRODUCT_DTYPES}, received {product_dtype!r}.")
        if not isinstance(keep_features, bool):
            raise TypeError(f"keep_features: expected True or False, received {keep_features!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"seed: expected a non-negative integer, received {seed!r}.")
        self.client = client
        self.manifold = manifold
        self.k = positive_int("k", k)
        self.n = positive_int("n_points", n_points)
        self.seed = int(seed)
        self.block_size = positive_int("block_size", block_size)
        self.link = link
        self.keep_features = keep_features
        self.timeout = positive_float("timeout", timeout)
        self.jacobi_max_points = jacobi_max_points
        self.where = str(getattr(getattr(client, "scheduler", None), "address", None) or "the dask cluster")
        sizes = block_sizes(self.n, self.block_size)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (B + 1,)
        ptoken = tokenize("ntkflow.cy.distributed.points/1", manifold.name, np.asarray(manifold.coefficients),
                          np.asarray(manifold.exponents), self.seed, self.block_size, self.n)
        # the points: a deterministic key per block (the same run resubmitted finds them)
        self._points = tuple(client.submit(_task_points, manifold, b, size, self.seed,
                                           key=f"ntkflow-cy-points-{ptoken}-{b}") for b, size in enumerate(sizes))
        # whitening: Gram = Σ_b partial sums / Σ w (map + tree reduce), eigen-decomposed on the driver
        grams = [client.submit(_task_gram, p, self.k, chunk, pure=True) for p in self._points]
        G_sum, w_sum = self._reduce(grams)
        self.weight_mean = w_sum / self.n
        self.M = whitening_matrix(G_sum / w_sum, whiten_rtol)  # (N, N_k)
        self._spec = (self.k, self.M, self.weight_mean, link, chunk, product_dtype)
        ftoken = tokenize(ptoken, self._spec)
        if keep_features:
            self._blocks = tuple(client.submit(_task_problem, p, self._spec, key=f"ntkflow-cy-features-{ftoken}-{b}")
                                 for b, p in enumerate(self._points))
            self._spec_arg = None  # a kept block needs no spec
        else:
            self._blocks = self._points
            self._spec_arg = self._spec
        # θ ↔ H arithmetic on the driver: PrimalProblem's, on a one-point problem with the same M
        one = sample(manifold, 1, seed=block_seed(self.seed, 0), progress=False, check_smooth=False)
        self._coords = PrimalProblem(one.points, one.jacobian, one.weights, np.log(one.omega_sq), self.k,
                                     whiten=self.M, link=link)
        self.nk = self._coords.nk
        self.exps = self._coords.exps
        self.n_params = self._coords.n_params
        self.weights = None  # the residual never leaves the workers: linearise returns NormalEquations
        self.mesh = None  # no JAX device mesh (the points are on the dask workers)
        self._lin: _State | None = None

    # ---- map + reduce ---------------------------------------------------------------------
    def _map(self, fn, *args, per_block=None):
        """fn(block, spec, *per_block[b], *args) on every block (futures)."""
        c = self.client
        return [c.submit(fn, blk, self._spec_arg, *(per_block[b] if per_block is not None else ()), *args, pure=True)
                for b, blk in enumerate(self._blocks)]

    def _reduce(self, futs, fan_in: int = 16):
        """Tree sum of the blocks' results (``fan_in`` partial results per sum, in block order: the same
        sums wherever the blocks ran), gathered on the driver."""
        c = self.client
        futs = list(futs)
        while len(futs) > 1:
            futs = [c.submit(_add, *futs[i:i + fan_in], pure=True) for i in range(0, len(futs), fan_in)]
        return gather_bounded(c, futs, self.timeout, self.where, what="a block of the distributed problem")[0]

    # ---- LeastSquaresProblem ------------------------------------------------------------------
    def unvec(self, v):
        """θ -> (H (N_k, N_k) Hermitian in the whitened basis, c): PrimalProblem's."""
        return self._coords.unvec(v)

    def monomial_H(self, H):
        """H in the monomial basis (φ = sᵀ (M H M†) s̄ / |z|^{2k})."""
        return self._coords.monomial_H(H)

    def initial(self):
        """PrimalProblem's start (H = 0 identity link, H = I log link) with c fitted over all blocks."""
        v = np.zeros(self.n_params)
        if self.link == "log":
            v[:self.nk] = 1.0
        sums = self._reduce(self._map(_task_residual_sums, v))
        if sums is None:
            raise ValueError("initial metric is not positive definite at every training point.")
        v[-1] = sums[0] / sums[1]
        return v

    def loss(self, v) -> float:
        """Σ w r² / n over all blocks (+inf where g is not positive definite at some point)."""
        return float(self._reduce(self._map(_task_loss, np.asarray(v, dtype=np.float64)))) / self.n

    def penalty(self):
        """PrimalProblem's ridge P = diag(1, …, 1, 0)."""
        return self._coords.penalty()

    def linearise(self, v) -> NormalEquations | None:
        """(JᵀWr/n, the operator JᵀWJ/n, diag JᵀWJ/n) at θ = v, or None where g is not positive definite.

        The blocks' states are built and kept on the workers; every product V ↦ JᵀWJV/n sends V in the
        blocks' tasks and reduces the (p, k) partial products."""
        v = np.array(v, dtype=np.float64)
        self._lin = None  # release the previous linearisation's state on the workers
        states = self._map(_task_state, v)
        stride = 1 if self.jacobi_max_points is None else max(1, -(-self.n // int(self.jacobi_max_points)))
        idx = []
        for b in range(len(self._blocks)):
            lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
            idx.append(None if stride == 1 else np.arange((-lo) % stride, hi - lo, stride))
        # both maps are submitted before either is gathered: the diagonal's tasks run while JᵀWr is reduced
        grads = self._map(_task_grad, per_block=[(s,) for s in states])
        diags = self._map(_task_diag, per_block=[(s, i) for s, i in zip(states, idx)])
        grad = self._reduce(grads)
        if grad is None:
            return None
        lin = _State(theta=v, states=tuple(states))
        self._lin = lin
        n_sub = len(range(0, self.n, stride))
        diag = self._reduce(diags) * (self.n / n_sub) / self.n  # PrimalProblem._jacobi_diag's normalisation

        def gram(V):
            V = np.asarray(V, dtype=np.float64)  # (p, k)
            return self._reduce(self._map(_task_gram_mm, V, per_block=[(s,) for s in lin.states])) / self.n

        op = ProductOperator(self.n_params, self.n_params, forward=gram, adjoint=gram)
        return NormalEquations(grad=grad / self.n, gram=op, diag=diag)

    # ---- diagnostics ---------------------------------------------------------------------------
    def sigma_train(self, v) -> float:
        """σ = Σ w |1 − η/⟨η⟩_w| / Σ w on the training points (NaN where infeasible): two map-reduces."""
        v = np.asarray(v, dtype=np.float64)
        s = self._reduce(self._map(_task_sigma_sums, v, None))
        if s is None:
            return float("nan")
        kappa = s[0] / s[1]
        return float(self._reduce(self._map(_task_sigma_sums, v, kappa)) / s[1])

    def memory(self) -> dict:
        """Peak memory of the driver and of each worker (:func:`peak_memory`)."""
        return peak_memory(self.client)

    def block_holders(self) -> list[list[str]]:
        """For each block, the addresses of the workers holding its features (or points: keep_features=False)."""
        from distributed import wait  # deferred: dask is heavy to import

        with self.client.as_current():
            wait(list(self._blocks), timeout=self.timeout)
        who = self.client.who_has(list(self._blocks))
        return [sorted(who.get(f.key, ())) for f in self._blocks]

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    def release(self):
        """Drop every future (the workers free the blocks)."""
        self._lin = None
        self._blocks = self._points = ()

    def __repr__(self):
        return (f"DistributedPrimalProblem(n={self.n}, k={self.k}, blocks={self.n_blocks}×≤{self.block_size}, "
                f"link={self.link!r}, keep_features={self.keep_features}, scheduler={self.where!r})")

