"""Measure the acceptance figures of the local flow (ntkflow.ricci.local) and print them.

    python docs/examples/ricci_local_acceptance.py          # ~5 min on 2 shared CPU cores

Round S² and S³ (r₀ = 1.3, degree 2) to 90 % of the extinction time: relative error of r² = r₀² − 2(n−1)t
(from the volume), anisotropy, λ·r²/(n(n−1)); dA/dt = −4πχ on a bumpy S² and a bumpy T² (degree 8);
λ and F[g, f_g] along the flows; extinction of the unit S²; the Möbius-pulled-back round S² under the
λ-gradient flow with both local kernels.
"""
from __future__ import annotations

import math
import time

import jax.numpy as jnp
import numpy as np

import ntkflow  # noqa: F401
from ntkflow.ricci.domains import Sphere, Torus, metric_from_function, round_metric
from ntkflow.ricci.local import LocalFlowConfig, local_flow
from ntkflow.ricci.perelman import LambdaDriver, LocalKernel


def main():
    for n in (2, 3):
        S, r0 = Sphere(n), 1.3
        T = r0**2 / (2 * (n - 1))
        t = time.perf_counter()
        res = local_flow(S, round_metric(S, r0), 0.9 * T, t_out=np.linspace(0.1, 0.9, 9) * T, config=LocalFlowConfig(degree=2))
        exact = r0**2 - 2 * (n - 1) * res.times
        r2 = (res.scalars["volume"] / S.reference_volume) ** (2 / n)
        print(f"round S^{n}: t/T up to {res.times[-1] / T:.2f}, max rel err r^2 {np.max(np.abs(r2 / exact - 1)):.2e}, "
              f"max anisotropy {res.scalars['anisotropy'].max():.2e}, max |lambda r^2/(n(n-1)) - 1| "
              f"{np.max(np.abs(res.scalars['lambda'] * exact / (n * (n - 1)) - 1)):.2e}, {res.steps} steps, "
              f"{res.nfev} rhs, {time.perf_counter() - t:.1f} s")
    S = Sphere(2)
    res = local_flow(S, round_metric(S, 1.0), 1.0, t_out=[0.3, 0.45, 0.49], config=LocalFlowConfig(degree=2, track_lambda=False))
    print(f"unit S^2 to t = 1: status {res.status}: {res.message}")

    u = lambda x: 0.25 * x[0] + 0.15 * x[1] * x[2] + 0.1 * x[2] ** 2
    metric = metric_from_function(lambda x: jnp.exp(2 * u(x)) * jnp.eye(3), S)
    t = time.perf_counter()
    res = local_flow(S, metric, 0.3, t_out=[0.1, 0.2], config=LocalFlowConfig(degree=8, rtol=1e-9, atol=1e-11))
    fd = np.diff(res.scalars["volume"]) / np.diff(res.times)
    print(f"bumpy S^2 (degree 8, fit {res.fit_residual:.1e}): max |dA/dt / (-8 pi) - 1| = "
          f"{np.max(np.abs(res.scalars['volume_rate'] / (-8 * math.pi) - 1)):.1e} (velocity), "
          f"{np.max(np.abs(fd / (-8 * math.pi) - 1)):.1e} (area differences); lambda {np.round(res.scalars['lambda'], 6)}, "
          f"F - lambda {np.max(np.abs(res.scalars['F'] - res.scalars['lambda'])):.1e}; {time.perf_counter() - t:.1f} s")

    T2 = Torus(2)
    ut = lambda th: 0.3 * jnp.sin(th[0]) * jnp.cos(th[1]) + 0.2 * jnp.cos(2 * th[0] - th[1])
    metric = metric_from_function(lambda th: jnp.exp(2 * ut(th)) * jnp.eye(2), T2)
    t = time.perf_counter()
    res = local_flow(T2, metric, 0.5, t_out=[0.25], config=LocalFlowConfig(degree=8, rtol=1e-9, atol=1e-11))
    print(f"bumpy T^2 (degree 8, fit {res.fit_residual:.1e}): max |dA/dt| / 4 pi = "
          f"{np.max(np.abs(res.scalars['volume_rate'])) / (4 * math.pi):.1e}, area drift "
          f"{np.max(np.abs(res.scalars['volume'] / res.scalars['volume'][0] - 1)):.1e}; lambda {np.round(res.scalars['lambda'], 6)}; "
          f"{time.perf_counter() - t:.1f} s")

    b = 0.4
    metric = metric_from_function(lambda x: jnp.eye(3) / (jnp.cosh(b) - jnp.sinh(b) * x[2]) ** 2, S)
    for kind in ("perelman", "identity"):
        res = local_flow(S, metric, 0.1, driver=LambdaDriver(LocalKernel(kind), degree=4),
                         config=LocalFlowConfig(degree=12, rtol=1e-8, atol=1e-10, track_lambda=False))
        spread = (res.scalars["R_max"] - res.scalars["R_min"]) / res.scalars["R_max"]
        print(f"Moebius round S^2, L = -lambda, LocalKernel({kind!r}): (R_max - R_min)/R_max {spread[0]:.1e} -> "
              f"{spread[-1]:.1e} at t = 0.1, R_max {res.scalars['R_max'][-1]:.6f} (round: 2.5)")


if __name__ == "__main__":
    main()
