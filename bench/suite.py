"""``python -m bench``: every benchmark section in one command, JSON + plots, and README's tables.

    python -m bench --quick                       # CI-sized (a few minutes on 2 cores)
    python -m bench --full                        # the acceptance sizes (hours on 2 cores)
    python -m bench --quick --out DIR --update-readme
    python -m bench --quick --sections peers matvec

Each section runs one of the existing scripts ``bench/bench_*.py`` (unchanged, with section-sized
arguments) in its own process: its wall time, CPU seconds (user + system: less sensitive than wall time
to other jobs on a shared machine; summed over the section's processes, children included) and peak
resident memory (``os.wait4``: the largest peak of any one of those processes, not their sum) are its own, and a section that fails or runs past its time limit is
recorded in the JSON with its error (the tail of its log) while the run goes on. Output, under
``--out`` (default: a fresh ``bench/results/run-<mode>-<UTC time>``, never the working directory):

    bench.json            machine (CPU, cores, memory, load), JAX devices, library versions, and per
                          section: commands, status, wall, peak memory, error, the section's JSON results
    bench.png             wall time and peak memory per section
    <section>/            what the section's script writes (its JSON, its plot) and log.txt

``--update-readme`` rewrites README.md's marked region (``<!-- bench:begin ... -->`` …
``<!-- bench:end -->``) from bench.json through :mod:`bench.readme`; ``python -m bench.readme
RESULTS.json`` does the same for an earlier run.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SCHEMA = 1
#: distributions whose versions every run records (absent ones are recorded as null)
LIBRARIES = ("numpy", "scipy", "jax", "jaxlib", "pykeops", "keopscore", "dask", "distributed", "scikit-learn",
             "torch", "gpytorch", "linear_operator", "matplotlib", "ntkflow")


@dataclasses.dataclass(frozen=True)
class Section:
    """One benchmark section: ``commands`` run in order (argv lists; ``{out}`` is the section's folder,
    ``{py}`` this interpreter, ``{bench}`` the bench/ folder), each must exit 0."""

    name: str
    description: str
    commands: tuple[tuple[str, ...], ...]
    timeout_s: float

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"Section name must be an identifier, got {self.name!r}: use letters, digits, _")
        if not self.commands or not all(self.commands):
            raise ValueError(f"Section {self.name!r}: commands must be non-empty argv lists, got {self.commands!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"Section {self.name!r}: timeout_s must be > 0, got {self.timeout_s!r}")


def _script(name, *args):
    return ("{py}", "{bench}/" + name, *args)


def plan(mode: str) -> list[Section]:
    """The sections of ``mode`` ("quick" or "full"), in run order."""
    if mode not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick' or 'full', got {mode!r}")
    q = mode == "quick"
    t = 300.0 if q else 6 * 3600.0
    S = Section
    return [
        S("peers", "ntkflow operators/solvers vs raw pykeops (LazyTensor, KernelSolve), NumPy, scipy, sklearn, GPyTorch",
          (_script("bench_peers.py", "--out", "{out}",
                   *(("--n-matvec", "2000", "--n-solve", "1200", "--reg", "1e-4", "--m", "300", "--repeat", "2")
                     if q else ("--n-matvec", "10000", "--n-solve", "5000", "--m", "1000"))),), t),
        S("matvec", "Gaussian matvec throughput: ntkflow keops/jax/dense vs raw pykeops",
          (_script("bench_matvec.py", "--out", "{out}",
                   *(("--sizes", "2000", "4000", "--repeat", "1", "--dense-max", "4000") if q else ())),), t),
        S("sampling", "batched quintic sampler vs per-line np.roots",
          (_script("bench_sampling.py", "--out", "{out}",
                   *(("--n", "20000", "--n-compare", "2000", "--repeat", "1") if q else ())),), t),
        S("solvers", "Nyström KRR, Nyström-preconditioned exact KRR, sklearn and scipy at one size",
          (_script("bench_solvers.py", "--out", "{out}",
                   *(("--sections", "abc", "--a-n", "4000", "--a-m", "400", "--a-maxiter", "150", "--b-n", "600", "--b-m", "300",
                      "--b-maxiter", "150", "--c-n", "800", "--c-m", "200")
                     if q else ("--full",))),), t),
        S("cy", "σ against wall time: Bergman kernel + Gauss–Newton, Donaldson, finite network",
          (_script("bench_cy.py", "--out", "{out}",
                   *(("--n-train", "2000", "--n-test", "2000", "--bergman", "4", "--donaldson", "2",
                      "--network-seconds", "0") if q else ())),), t),
        S("euler", "Euler characteristic of a freshly trained model on fresh points",
          (("{py}", "-c", "from ntkflow.cli import main; raise SystemExit(main())", "cy", "-o", "{out}/model", "--n-curvature", "0",
            *(("-k", "4", "--n-train", "2000", "--n-test", "2000") if q else ())),
           _script("bench_euler.py", "--model", "{out}/model", "--out", "{out}",
                   *(("--n", "256", "--budget", "10") if q else ("--n", "100000", "--budget", "600")))), t),
        S("nosym", "quintic with no symmetry: σ against n and k (matrix-free Gauss–Newton)",
          (_script("bench_nosym.py", "--out", "{out}",
                   *(("--n", "1500", "--k", "3", "--n-test", "1500", "--max-steps", "2", "--budget", "20")
                     if q else ())),), t),
        S("dual", "dual form on Nyström centres: σ against m",
          (_script("bench_dual.py", "--out", "{out}",
                   *(("--n-train", "500", "--n-test", "500", "--s2", "0.2", "--centers", "100", "--max-iter", "3",
                      "--max-seconds", "30") if q else ())),), t),
        S("gaussian_flow", "the talk's literal Gaussian-kernel flow (solve_ivp, lazy four-derivative kernel)",
          (_script("bench_gaussian_flow.py", "--out", "{out}",
                   *(("--n-train", "100", "--n-test", "200", "--s2", "0.2", "--t-max", "1", "--max-seconds", "10",
                      "--n-eig", "2") if q else ())),), t),
        S("metric_flows", "Kähler metric flow and MSE memorisation",
          (_script("bench_metric_flows.py", "--out", "{out}",
                   *(("--n-flow", "100", "--n-test", "100", "--n-mem", "200", "--flow-times", "0.3", "1",
                      "--gn-steps", "1", "--mem-times", "1", "100", "--donaldson-k", "2", "--bergman-k", "0",
                      "--n-kahler", "20", "--skip-potential") if q else ())),), t),
        S("distributed", "matrix-free Gauss–Newton step on a dask LocalCluster vs in-process, same points",
          (_script("bench_distributed.py", "--out", "{out}",
                   *(("--k", "3", "--n", "4000", "--workers", "2", "--block-size", "1000", "--steps", "1",
                      "--products", "1") if q else ())),), t),
        S("ricci", "finite-σ metric flow: one right-hand side at scale, lazy vs dense",
          (_script("bench_ricci.py", "scale", "--out", "{out}",
                   *(("--n", "1000", "--n-dense", "0", "--domains", "T3", "--rhs-only") if q else ())),), t),
    ]


# ---------------------------------------------------------------- environment
def machine_info() -> dict:
    """CPU model, cores (all and usable), memory, OS, load average."""
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return dict(cpu=cpu or platform.processor() or platform.machine(), cores=os.cpu_count(),
                cores_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                memory_gib=mem, platform=platform.platform(), python=platform.python_version(),
                load_average=list(os.getloadavg()))


def library_versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def jax_devices() -> list[dict]:
    try:
        import jax
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        return [dict(error=f"{type(exc).__name__}: {exc}")]
    return [dict(platform=d.platform, kind=getattr(d, "device_kind", str(d)), id=d.id) for d in jax.devices()]


# ---------------------------------------------------------------- running
def _expand(cmd, out: Path) -> list[str]:
    subs = {"{py}": sys.executable, "{out}": str(out), "{bench}": str(BENCH)}
    res = []
    for a in cmd:
        for k, v in subs.items():
            a = a.replace(k, v)
        res.append(a)
    return res


def _wait(pid: int, deadline: float):
    """(exit status or None on timeout, max RSS GiB, CPU seconds (user + system)) of the process tree that
    was waited for."""
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 2**20, ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            return None, None, None
        time.sleep(0.2)


def run_section(section: Section, out: Path, log=print) -> dict:
    """Run ``section``'s commands in order under ``out/<name>``; never raises for a failing command."""
    import signal
    import subprocess

    sdir = out / section.name
    sdir.mkdir(parents=True, exist_ok=True)
    logfile = sdir / "log.txt"
    rec = dict(name=section.name, description=section.description, status="ok", returncode=0,
               commands=[_display(_expand(c, sdir)) for c in section.commands], peak_rss_gib=0.0, cpu_s=0.0)
    t0 = time.perf_counter()
    deadline = time.monotonic() + section.timeout_s
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(logfile, "w") as lf:
        for cmd in section.commands:
            argv = _expand(cmd, sdir)
            lf.write("$ " + _display(argv) + "\n")
            lf.flush()
            p = subprocess.Popen(argv, cwd=ROOT, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
            rc, rss, cpu = _wait(p.pid, deadline)
            p.returncode = rc if rc is not None else -9  # reaped by os.wait4; keep Popen from waiting again
            if rc is None:
                os.killpg(p.pid, signal.SIGKILL)
                os.waitpid(p.pid, 0)
                rec.update(status="timeout", returncode=None)
                break
            rec["peak_rss_gib"] = max(rec["peak_rss_gib"], rss)
            rec["cpu_s"] += cpu
            if rc != 0:
                rec.update(status="failed", returncode=rc)
                break
    rec["wall_s"] = time.perf_counter() - t0
    if rec["status"] != "ok":
        tail = logfile.read_text(errors="replace").splitlines()[-25:]
        rec["error"] = (f"timed out after {section.timeout_s:.0f} s" if rec["status"] == "timeout"
                        else f"exit status {rec['returncode']}") + "; log tail:\n" + "\n".join(tail)
    rec["files"] = sorted(str(p.relative_to(out)) for p in sdir.rglob("*") if p.is_file() and "model" not in p.parts)
    rec["results"] = {}
    for p in sorted(sdir.glob("*.json")):
        try:
            rec["results"][p.name] = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            rec["results"][p.name] = {"unreadable": f"{type(exc).__name__}: {exc}"}
    return rec


def _display(argv) -> str:
    """The command as a shell line (quoted), with this interpreter shown as ``python`` and paths relative
    to the repository root."""
    return shlex.join(argv).replace(sys.executable, "python").replace(str(ROOT) + "/", "")


def default_out(mode: str) -> Path:
    return BENCH / "results" / f"run-{mode}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def run(sections: list[Section], out: Path, *, mode: str, command: str, log=print) -> dict:
    """Run every section, write ``out/bench.json`` after each (so an interrupted run keeps what it did)."""
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(schema=SCHEMA, benchmark="ntkflow bench suite", mode=mode, command=command,
                   started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine=machine_info(),
                   devices=jax_devices(), versions=library_versions(), sections=[])
    t0 = time.perf_counter()
    for i, sec in enumerate(sections, 1):
        log(f"[{i}/{len(sections)}] {sec.name}: {sec.description} ...", flush=True)
        rec = run_section(sec, out)
        payload["sections"].append(rec)
        extra = f" — {rec['error'].splitlines()[0]} (see {out / sec.name / 'log.txt'})" if rec["status"] != "ok" else ""
        log(f"[{i}/{len(sections)}] {sec.name}: {rec['status']} in {rec['wall_s']:.1f} s, "
            f"peak {rec['peak_rss_gib']:.2f} GiB{extra}", flush=True)
        payload["wall_s"] = time.perf_counter() - t0
        _write(out / "bench.json", payload)
    payload["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload["load_average_end"] = list(os.getloadavg())
    _write(out / "bench.json", payload)
    try:
        plot(payload, out / "bench.png")
    except Exception as exc:  # noqa: BLE001 - a plot failure must not lose the JSON
        log(f"bench.png not written: {type(exc).__name__}: {exc}")
    return payload


def _write(path: Path, payload: dict):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float, allow_nan=True))
    os.replace(tmp, path)


def plot(payload: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    secs = payload["sections"]
    names = [s["name"] for s in secs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.45 * len(secs) + 1.5), sharey=True)
    colors = ["C0" if s["status"] == "ok" else "C3" for s in secs]
    a1.barh(range(len(secs)), [s["wall_s"] for s in secs], color=colors)
    a1.set_yticks(range(len(secs)), names)
    a1.invert_yaxis()
    a1.set_xlabel("wall (s)")
    a2.barh(range(len(secs)), [s["peak_rss_gib"] or 0.0 for s in secs], color=colors)
    a2.set_xlabel("peak RSS (GiB)")
    m = payload["machine"]
    fig.suptitle(f"python -m bench --{payload['mode']}: {m['cores']} cores, {m['cpu']} (red: failed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--quick", action="store_true", help="CI-sized sections (a few minutes on 2 cores)")
    g.add_argument("--full", action="store_true", help="the acceptance sizes (hours on 2 cores)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: a fresh bench/results/run-<mode>-<UTC time>)")
    ap.add_argument("--sections", nargs="+", default=None, metavar="NAME", help="run only these sections")
    ap.add_argument("--update-readme", action="store_true",
                    help="rewrite README.md's <!-- bench:begin --> region from this run's bench.json")
    ap.add_argument("--list", action="store_true", help="list the sections and their commands, run nothing")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sections = plan(mode)
    if args.sections:
        known = [s.name for s in sections]
        bad = [s for s in args.sections if s not in known]
        if bad:
            ap.error(f"--sections: unknown {bad}; choose from {known}")
        sections = [s for s in sections if s.name in args.sections]
    if args.list:
        for s in sections:
            print(f"{s.name}: {s.description}")
            for c in s.commands:
                print("    " + _display(_expand(c, Path("OUT") / s.name)))
        return 0
    out = args.out if args.out is not None else default_out(mode)
    if out.resolve() == Path.cwd().resolve():
        ap.error(f"--out: refusing the working directory itself ({out}); give a folder for the results")
    if (out / "bench.json").exists():
        ap.error(f"--out: {out} already holds a bench.json; choose a new folder (or delete that one)")
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"python -m bench --{mode}: {len(sections)} sections -> {out}", flush=True)
    payload = run(sections, out, mode=mode, command=command, log=print)
    n_ok = sum(s["status"] == "ok" for s in payload["sections"])
    print(f"done in {payload['wall_s']:.0f} s: {n_ok}/{len(sections)} sections ok; wrote {out / 'bench.json'}"
          f" and {out / 'bench.png'}")
    if args.update_readme:
        from bench import readme

        path = readme.update_readme(ROOT / "README.md", out / "bench.json")
        print(f"rewrote the bench region of {path}")
    return 0 if n_ok == len(sections) else 1
