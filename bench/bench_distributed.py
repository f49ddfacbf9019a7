"""Distributed (dask, N worker processes) vs in-process matrix-free Gauss–Newton step, same points, one run.

    python bench/bench_distributed.py --out bench/results/distributed --k 4 --n 100000 --workers 2 --steps 2

Problem: the no-symmetry quintic (``random_quintic(0)``), the matrix-free primal problem of ``ntkflow cy``
(log link) on the union of the blocks (seed, block_size): :class:`ntkflow.cy.distributed.DistributedPrimalProblem`
on an embedded LocalCluster (``--workers`` processes, one thread each) against
:class:`ntkflow.cy.matrixfree.PrimalProblem` in this process (NumPy, all cores) on the same points
(:func:`ntkflow.cy.distributed.reference_problem`). The job's LM settings (Marquardt scaling, one try,
CG rtol 1e-2, at most 60 iterations). At every state of the in-process trajectory the same step is taken
by both (the order alternating), so each row compares the same work: wall time of the step (linearisation,
CG, the trial loss), CG iterations (equal when the arithmetic is), relative difference of the steps, and the
time of one product JᵀWJv. Setup (sampling + whitening + features) and peak memory of the driver and of
every worker (measured before the in-process problem is built) are recorded too. Timings on a shared machine
are noisy: compare the ratios measured in the same run. Writes OUT/bench_distributed_k{K}_n{N}.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/distributed")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=float, default=1e5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-size", type=int, default=25_000)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--products", type=int, default=2, help="single products timed per side (best of)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--in-process-blas-threads", type=int, default=None,
                    help="limit the in-process steps' BLAS threads (threadpoolctl; default: the library's own)")
    ap.add_argument("--cg-rtol", type=float, default=1e-2)
    ap.add_argument("--cg-maxiter", type=int, default=60)
    args = ap.parse_args(argv)

    sys.path.insert(0, os.path.dirname(__file__))
    from _common import machine, write_json

    from ntkflow.cy.distributed import DistributedPrimalProblem, local_client, reference_problem
    from ntkflow.manifolds import random_quintic
    from ntkflow.solvers.least_squares import CGSolve, LMConfig, initial_state, lm_step

    n, k = int(args.n), args.k
    m = random_quintic(0)
    lm = LMConfig(max_iter=args.steps, scaling="marquardt", max_tries=1, stop_on_reject=False)
    solve = CGSolve(rtol=args.cg_rtol, maxiter=args.cg_maxiter)
    client, cluster = local_client(args.workers)
    try:
        t = time.perf_counter()
        dp = DistributedPrimalProblem(client, m, n, k, seed=args.seed, block_size=args.block_size, link="log")
        v0 = dp.initial()  # waits for the features
        t_setup_dist = time.perf_counter() - t
        mem = dp.memory()  # before the in-process problem exists
        t = time.perf_counter()
        ref = reference_problem(m, n, k, seed=args.seed, block_size=args.block_size, link="log")
        t_setup_ref = time.perf_counter() - t
        print(f"setup: distributed {t_setup_dist:.1f} s, in-process {t_setup_ref:.1f} s; p = {ref.n_params}", flush=True)

        def product_time(prob):
            ne = prob.linearise(v0)
            V = np.ones((prob.n_params, 1))
            if hasattr(ne, "gram"):
                fn = lambda: ne.gram.mm(V)  # noqa: E731
            else:
                w = prob.weights[:, None] / prob.n
                fn = lambda: ne.J.T.mm(w * ne.J.mm(V))  # noqa: E731
            fn()
            best = np.inf
            for _ in range(args.products):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            return best

        from threadpoolctl import threadpool_limits

        p_ref, p_dist = product_time(ref), product_time(dp)
        with threadpool_limits(1):  # the workers' BLAS runs one thread each (dask's nanny sets it)
            p_ref1 = product_time(ref)
        print(f"one product JᵀWJv: in-process {p_ref:.3f} s (1 BLAS thread: {p_ref1:.3f} s), distributed "
              f"{p_dist:.3f} s", flush=True)
        rows = []
        st = initial_state(ref, lm)
        for i in range(args.steps):
            out = {}
            for name in (("ref", "dist") if i % 2 == 0 else ("dist", "ref")):
                prob = ref if name == "ref" else dp
                limit = args.in_process_blas_threads if name == "ref" else None
                with threadpool_limits(limit):
                    t0 = time.perf_counter()
                    nxt = lm_step(prob, st, lm, solve)
                    out[name] = (time.perf_counter() - t0, nxt)
            (t_r, s_r), (t_d, s_d) = out["ref"], out["dist"]
            d_r, d_d = s_r.theta - st.theta, s_d.theta - st.theta
            row = {"step": i + 1, "seconds_in_process": t_r, "seconds_distributed": t_d, "ratio": t_d / t_r,
                   "cg_iterations_in_process": s_r.history[-1].get("cg_iterations"),
                   "cg_iterations_distributed": s_d.history[-1].get("cg_iterations"),
                   "step_rel_diff": float(np.max(np.abs(d_r - d_d)) / np.max(np.abs(d_r))),
                   "loss_in_process": s_r.loss, "loss_distributed": s_d.loss}
            print(row, flush=True)
            rows.append(row)
            st = s_r
        payload = {
            "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
            "machine": machine(), "n": n, "k": k, "n_params": ref.n_params, "workers": args.workers,
            "block_size": args.block_size, "n_blocks": dp.n_blocks, "threads_per_worker": 1,
            "in_process_blas_threads": args.in_process_blas_threads or "library default",
            "setup_seconds": {"distributed": t_setup_dist, "in_process": t_setup_ref},
            "product_seconds": {"distributed": p_dist, "in_process": p_ref, "ratio": p_dist / p_ref,
                                "in_process_1_blas_thread": p_ref1, "ratio_to_1_blas_thread": p_dist / p_ref1},
            "steps": rows,
            "step_ratio_total": sum(r["seconds_distributed"] for r in rows) / sum(r["seconds_in_process"] for r in rows),
            "memory_before_in_process_problem": mem,
            "note": "wall times on a shared 2-core machine (load in machine.load_avg_1min): ratios measured side by side",
        }
        tag = "" if args.in_process_blas_threads is None else f"_blas{args.in_process_blas_threads}"
        path = write_json(Path(args.out), f"bench_distributed_k{k}_n{n}{tag}", payload)
        print(f"wrote {path}; step ratio distributed/in-process = {payload['step_ratio_total']:.2f}", flush=True)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
