"""Peers side by side in one run: ntkflow's kernel operators and KRR solvers against raw pykeops
(``LazyTensor`` matvec, ``KernelSolve``), dense NumPy, ``scipy.linalg.cho_solve``, scikit-learn's
``KernelRidge`` and, where torch + gpytorch import, GPyTorch's KeOps RBF kernel and its CG.

    python bench/bench_peers.py --out DIR                              # n = 10⁴ matvec, 5·10³ solve
    python bench/bench_peers.py --out DIR --n-matvec 3000 --n-solve 2000 # quick

Problem (the one of bench_solvers.py): x ~ N(0, I_d), d = 10, y = sin(x₀) + ½ cos(x₁x₂) + 0.1 ε;
Gaussian kernel K_ij = exp(−|x_i − x_j|²/2ℓ²), ℓ = √d, float64.

matvec  y = K v. Reference: NumPy dense (K formed from scipy's ``cdist``, then K @ v). Reported per
        method: best-of-``--repeat`` seconds after one warm-up call, relative error against the
        reference, peak memory.
solve   (K + μI) α = y with μ = λn (λ = ``--reg``; sklearn ``alpha = μ``). Reference:
        ``scipy.linalg.cho_factor``/``cho_solve`` on the dense matrix. Reported per method: seconds of
        one solve after one warm-up solve of the same problem (JIT compilation and KeOps' formula cache
        out of the figure), the true relative residual ‖(K + μI)α − y‖/‖y‖ (dense K), the relative
        error of α against the reference, iterations where the method has them, peak memory.
        pykeops' CG stops when ‖r‖² < n·eps² (absolute, no iteration cap): eps = rtol‖y‖/√n gives
        the same relative tolerance ``--rtol`` as ntkflow's CG. GPyTorch: ``max_cholesky_size(0)``
        forces its (pivoted-Cholesky preconditioned) CG, ``cg_tolerance(rtol)``,
        ``max_cg_iterations(--gpytorch-maxiter)``.

Peak memory is the peak resident set size of this process above its value before the method ran,
sampled every millisecond by a thread (/proc/self/statm); it catches NumPy, XLA and KeOps buffers
alike but can miss spikes shorter than a millisecond. Before each method the heap is trimmed
(``malloc_trim``) and large blocks are mmap-ed (``mallopt``, glibc), so that memory an earlier method
freed is not silently reused below the baseline.

Writes DIR/bench_peers.json and DIR/bench_peers.png.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, timeit, write_json  # noqa: E402
from bench_matvec import raw_pykeops  # noqa: E402
from bench_solvers import D, data  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Context manager: peak resident set size above the entry value (GiB), sampled every ``dt`` s."""

    def __init__(self, dt: float = 1e-3):
        self.dt = dt
        self.peak_gib = 0.0

    def _watch(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.dt)

    def __enter__(self):
        self._base = _rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_gib = (self._peak - self._base) / 2**30
        return False


def _libc():
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim  # noqa: B018 - glibc only
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def release_memory():
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``), so that the next method's
    peak RSS is not hidden by memory an earlier method freed but the allocator kept."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def measure(fn, *, repeat: int, warmup: int = 1):
    """(best seconds of ``repeat`` calls after ``warmup`` calls, peak RSS increase GiB, last output)."""
    release_memory()
    with PeakRSS() as mem:
        best, out = timeit(fn, repeat=repeat, warmup=warmup)
    return best, mem.peak_gib, out


def gpytorch_status():
    """(True, versions) when torch and gpytorch import, else (False, the reason)."""
    try:
        torch = importlib.import_module("torch")
        gpytorch = importlib.import_module("gpytorch")
        importlib.import_module("pykeops.torch")
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip, and say why
        return False, f"{type(exc).__name__}: {exc} (optional: pip install torch gpytorch)"
    return True, {"torch": torch.__version__, "gpytorch": gpytorch.__version__}


def numpy_dense(x, ell):
    """K formed with scipy's cdist (independent of ntkflow's kernels); (n, n) float64."""
    from scipy.spatial.distance import cdist

    return np.exp(-cdist(x, x, "sqeuclidean") / (2 * ell**2))


def rel(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def bench_matvec(n, *, repeat, seed, have_gpytorch, log=print):
    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian, kernel_operator

    x, _ = data(n, seed=seed)
    v = np.random.default_rng(seed + 1).normal(size=n)
    ell = float(np.sqrt(D))
    k = Gaussian(ell)
    K = numpy_dense(x, ell)
    ref = K @ v
    del K
    methods = {
        "numpy dense (cdist, K @ v)": lambda: numpy_dense(x, ell) @ v,
        "raw pykeops LazyTensor": lambda: raw_pykeops(x, v, ell),
        "ntkflow keops": (lambda op: (lambda: op.mv(v)))(kernel_operator(k, x, backend="keops")),
        "ntkflow jax": (lambda op: (lambda: op.mv(v)))(kernel_operator(k, x, backend="jax")),
        "ntkflow dense (forms K)": (lambda op: (lambda: op.mv(v)))(kernel_operator(k, x, backend="dense")),
    }
    if have_gpytorch:
        methods["gpytorch keops RBFKernel"] = _gpytorch_matvec(x, v, ell)
    rows = []
    for name, fn in methods.items():
        t, mem, out = measure(fn, repeat=repeat)
        row = dict(method=name, seconds=t, pairs_per_s=n * n / t, peak_rss_gib=mem, relerr_vs_numpy=rel(out, ref))
        rows.append(row)
        log(f"  matvec n={n}: {name:<28} {t:9.4f} s  relerr {row['relerr_vs_numpy']:.1e}  peak +{mem:.3f} GiB")
    return dict(n=n, d=D, lengthscale=ell, reference="numpy dense (cdist, K @ v)", rows=rows)


def _gpytorch_matvec(x, v, ell):
    import torch
    from gpytorch.kernels.keops import RBFKernel

    kern = RBFKernel().double()
    kern.lengthscale = ell
    xt = torch.from_numpy(x)
    vt = torch.from_numpy(v)[:, None]

    def fn():
        with torch.no_grad():
            return kern(xt).matmul(vt)[:, 0].numpy()

    return fn


def bench_solve(n, *, reg, rtol, m, repeat, seed, have_gpytorch, gpytorch_maxiter, log=print):
    import scipy.linalg as sla
    from pykeops.numpy import KernelSolve
    from sklearn.kernel_ridge import KernelRidge

    import ntkflow  # noqa: F401
    from ntkflow.engine import Gaussian
    from ntkflow.solvers import krr_exact

    x, y = data(n, seed=seed)
    ell = float(np.sqrt(D))
    gamma = 1.0 / (2 * ell**2)
    k = Gaussian(ell)
    mu = reg * n
    Kd = numpy_dense(x, ell)  # (n, n): accuracy checks only

    def true_residual(a):
        return float(np.linalg.norm(Kd @ a + mu * a - y) / np.linalg.norm(y))

    def scipy_cho():
        A = numpy_dense(x, ell)
        A[np.diag_indices(n)] += mu
        return sla.cho_solve(sla.cho_factor(A, lower=True, overwrite_a=True), y)

    def numpy_solve():
        A = numpy_dense(x, ell)
        A[np.diag_indices(n)] += mu
        return np.linalg.solve(A, y)

    def sklearn_krr():
        return np.ravel(KernelRidge(alpha=mu, kernel="rbf", gamma=gamma).fit(x, y).dual_coef_)

    ks = KernelSolve("Exp(-G * SqDist(X, Y)) * B", ["G = Pm(1)", "X = Vi(%d)" % D, "Y = Vj(%d)" % D, "B = Vj(1)"],
                     "B", axis=1)
    eps = rtol * float(np.linalg.norm(y)) / np.sqrt(n)

    def pykeops_solve():
        return ks(np.array([gamma]), x, x, y[:, None].copy(), alpha=mu, eps=eps)[:, 0]

    def ntk(precond, backend):
        def fn():
            r = krr_exact(k, x, y, reg, precond=precond, m=m, backend=backend, seed=seed + 4, rtol=rtol,
                          maxiter=20 * int(np.sqrt(n)) + 500)
            return r
        return fn

    methods = {
        "scipy cho_solve (dense)": (scipy_cho, None),
        "numpy.linalg.solve (dense)": (numpy_solve, None),
        "sklearn KernelRidge": (sklearn_krr, None),
        "pykeops KernelSolve (CG)": (pykeops_solve, None),
        "ntkflow krr_exact keops, plain CG": (ntk(None, "keops"), "cg"),
        "ntkflow krr_exact keops, Nyström PCG": (ntk("nystrom", "keops"), "cg"),
        "ntkflow krr_exact jax, Nyström PCG": (ntk("nystrom", "jax"), "cg"),
    }
    skipped = {}
    if have_gpytorch:
        methods["gpytorch keops RBF, CG"] = (_gpytorch_solve(x, y, ell, mu, rtol, gpytorch_maxiter), None)
    rows = []
    a_ref = None
    for name, (fn, kind) in methods.items():
        try:
            t, mem, out = measure(fn, repeat=repeat)
        except Exception as exc:  # noqa: BLE001 - a failing peer is recorded, the others still run
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log(f"  solve  n={n}: {name:<38} FAILED {skipped[name]}")
            continue
        row = dict(method=name, seconds=t, peak_rss_gib=mem)
        if kind == "cg":
            row.update(iterations=int(out.cg.iterations), converged=bool(out.converged))
            out = np.asarray(out.coefficients)
        a = np.asarray(out, dtype=np.float64)
        if a_ref is None:
            a_ref = a
        row.update(relative_residual=true_residual(a), relerr_alpha_vs_scipy=rel(a, a_ref))
        rows.append(row)
        log(f"  solve  n={n}: {name:<38} {t:9.3f} s  residual {row['relative_residual']:.1e}  "
            f"α err {row['relerr_alpha_vs_scipy']:.1e}" + (f"  it {row['iterations']}" if "iterations" in row else "")
            + f"  peak +{mem:.3f} GiB")
    return dict(n=n, d=D, lengthscale=ell, reg=reg, mu=mu, rtol=rtol, m=m, reference="scipy cho_solve (dense)",
                rows=rows, failed=skipped)


def _gpytorch_solve(x, y, ell, mu, rtol, maxiter):
    import gpytorch
    import torch
    from gpytorch.kernels.keops import RBFKernel

    kern = RBFKernel().double()
    kern.lengthscale = ell
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)[:, None]

    def fn():
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(0), gpytorch.settings.cg_tolerance(rtol), \
                gpytorch.settings.max_cg_iterations(maxiter):
            return kern(xt).add_diagonal(torch.tensor(mu, dtype=torch.float64)).solve(yt)[:, 0].numpy()

    return fn


def plot(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, key, title in ((axes[0], "matvec", "K v, n = {n}"), (axes[1], "solve", "(K + λnI) α = y, n = {n}")):
        sec = payload.get(key)
        if not sec:
            ax.set_visible(False)
            continue
        rows = sec["rows"]
        names = [r["method"] for r in rows]
        t = [r["seconds"] for r in rows]
        colors = ["C0" if r["method"].startswith("ntkflow") else "gray" for r in rows]
        ax.barh(range(len(rows)), t, color=colors)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds (log)")
        ax.invert_yaxis()
        err_key = "relerr_vs_numpy" if key == "matvec" else "relative_residual"
        for i, r in enumerate(rows):
            ax.text(r["seconds"], i, f" {r[err_key]:.0e}", va="center", fontsize=7)
        ax.set_title(title.format(n=sec["n"]) + ("  (labels: rel. error)" if key == "matvec" else "  (labels: rel. residual)"),
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-matvec", type=int, default=10_000)
    ap.add_argument("--n-solve", type=int, default=5_000)
    ap.add_argument("--reg", type=float, default=1e-6, help="λ of (K + λnI) α = y")
    ap.add_argument("--rtol", type=float, default=1e-8, help="relative residual of the iterative solvers")
    ap.add_argument("--m", type=int, default=1000, help="Nyström centres of ntkflow's preconditioner")
    ap.add_argument("--repeat", type=int, default=3, help="timed matvec calls (best taken); solves are timed once")
    ap.add_argument("--gpytorch-maxiter", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("n_matvec", "n_solve", "m", "repeat"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    if _LIBC is not None:  # glibc: arrays ≥ 64 KiB always mmap-ed, so their memory leaves RSS when freed
        _LIBC.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD (fixed: no dynamic raise after frees)
    have_gp, gp = gpytorch_status()
    print(f"[bench_peers] gpytorch: {gp if have_gp else 'skipped — ' + gp}", flush=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    payload = dict(benchmark="peers", command="python bench/bench_peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   machine=machine(),
                   gpytorch=dict(available=have_gp, **({"versions": gp} if have_gp else {"reason": gp})))
    payload["matvec"] = bench_matvec(args.n_matvec, repeat=args.repeat, seed=args.seed, have_gpytorch=have_gp, log=log)
    write_json(args.out, "bench_peers", payload)
    payload["solve"] = bench_solve(args.n_solve, reg=args.reg, rtol=args.rtol, m=args.m, repeat=1, seed=args.seed,
                                   have_gpytorch=have_gp, gpytorch_maxiter=args.gpytorch_maxiter, log=log)
    path = write_json(args.out, "bench_peers", payload)
    plot(payload, args.out / "bench_peers.png")
    print(f"[bench_peers] wrote {path} and {args.out / 'bench_peers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
