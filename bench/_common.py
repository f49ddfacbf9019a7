"""Helpers shared by the benchmarks: timing with warm-up, peak memory, JSON + plot output."""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path


def timeit(fn, *, repeat: int = 3, warmup: int = 1):
    """Best-of-`repeat` wall time of fn() after `warmup` calls; returns (seconds, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_json(out_dir: Path, name: str, payload: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path
