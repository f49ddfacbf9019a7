"""README's performance tables, rendered from a ``python -m bench`` run's ``bench.json``.

    python -m bench.readme bench/results/quick/bench.json      # rewrite README.md's bench region
    python -m bench.readme RESULTS.json --print                # print the region, change nothing

The region is everything between ``<!-- bench:begin source=PATH -->`` and ``<!-- bench:end -->`` in
README.md; ``source`` names the JSON it was made from (relative to the repository root), so a test can
re-render it and compare (tests/test_bench.py): no figure in the region is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench:begin source={source} -->"
END = "<!-- bench:end -->"
_BEGIN_RE = re.compile(r"<!-- bench:begin source=(\S+) -->")


def fmt(x, spec: str = ".3g") -> str:
    """A number as text (``—`` for None); floats with ``spec``."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return format(float(x), spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ------------------------------------------------------------ one-line summaries of each section
def _first_json(sec: dict) -> dict:
    res = sec.get("results") or {}
    return next(iter(res.values())) if res else {}


def _h_peers(r):
    mv = {x["method"]: x for x in r["matvec"]["rows"]}
    sv = r["solve"]["rows"]
    best = min((x for x in sv if x["method"].startswith("ntkflow")), key=lambda x: x["seconds"])
    ref = next(x for x in sv if x["method"] == r["solve"]["reference"])
    return (f"K v n = {r['matvec']['n']}: ntkflow keops / raw pykeops time "
            f"{fmt(mv['ntkflow keops']['seconds'] / mv['raw pykeops LazyTensor']['seconds'], '.2f')}; "
            f"solve n = {r['solve']['n']}: scipy / best ntkflow time {fmt(ref['seconds'] / best['seconds'], '.2f')} "
            "(tables below)")


def _h_matvec(r):
    row = r["rows"][-1]
    s = f"n = {row['n']}: keops / raw pykeops time {fmt(row['keops_over_raw_time'], '.2f')}"
    big = [x for x in r["rows"] if "dense_over_keops_time" in x]
    if big:
        s += f"; dense / keops time {fmt(big[-1]['dense_over_keops_time'], '.3g')} at n = {big[-1]['n']}"
    return s


def _h_sampling(r):
    c = r["compare"]
    return (f"{fmt(c['speedup_median'], '.3g')}× the points/s of per-line np.roots (n = {c['n']}); "
            f"{fmt(r['headline']['points_per_s'], '.3g')} points/s at n = {r['headline']['n']}")


def _h_solvers(r):
    parts = []
    if "a" in r and "iterations" in r["a"]:
        a = r["a"]
        parts.append(f"Nyström KRR n = {a['n']}, m = {a['m']}: {a['iterations']} it "
                     f"({'' if a['converged'] else 'not '}converged), residual "
                     f"{fmt(a['relative_residual'], '.2g')}, {fmt(a['wall_s'], '.3g')} s")
    if "b" in r and "iterations" in r["b"]:
        b = r["b"]
        parts.append(f"exact KRR n = {b['n']}: {b['iterations']} PCG it "
                     f"({'' if b['converged'] else 'not '}converged, residual {fmt(b['relative_residual'], '.2g')})"
                     + (f" (plain CG {b['plain']['iterations']})" if "plain" in b else ""))
    if "c" in r and "scipy_solve_s" in r["c"]:
        parts.append(f"n = {r['c']['n']}: scipy / krr_exact time {fmt(r['c']['ratio_scipy_over_ntkflow'], '.2f')}")
    return "; ".join(parts)


def _h_cy(r):
    recs = r["runs"] if isinstance(r, dict) and "runs" in r else r
    best = min((x for x in recs if x.get("sigma_test") is not None), key=lambda x: x["sigma_test"])
    return f"best held-out σ {fmt(best['sigma_test'], '.3g')} ({best['method']}, k = {best.get('k')}, {fmt(best.get('wall_seconds'), '.3g')} s)"


def _h_euler(r):
    return (f"χ = {fmt(r['euler'], '.4g')} ± {fmt(r['euler_stderr'], '.2g')} (expected {r['expected']}) on "
            f"{r['n_points']} points")


def _h_nosym(r):
    x = r["runs"][-1]
    return f"n = {x['n']}, k = {x['k']}: held-out σ {fmt(x['best_sigma_test'], '.3g')} (FS {fmt(x['fs_sigma_test'], '.3g')})"


def _h_dual(r):
    x = min(r["runs"], key=lambda x: x["sigma_test"])
    return f"m = {x['centers']}, s² = {x['s2']}: held-out σ {fmt(x['sigma_test'], '.3g')} in {fmt(x['wall'], '.3g')} s"


def _h_gaussian_flow(r):
    x = r["runs"][0]
    return (f"n = {x['n_train']}, s² = {x['s2']}: σ held-out {fmt(x['sigma_test'][-1], '.3g')} at t = "
            f"{fmt(x['times'][-1], '.3g')}; {fmt(x['seconds_per_rhs'], '.3g')} s per RHS")


def _h_metric_flows(r):
    parts = []
    if "metric_flow" in r:
        mf = r["metric_flow"]
        sig = mf.get("sigma_test")
        if isinstance(sig, list):
            sig = sig[-1]
        parts.append(f"metric flow n = {mf.get('n_train')}: σ train {fmt(mf.get('sigma_train_final'), '.3g')}, "
                     f"held-out {fmt(sig, '.3g')}")
    parts.append(f"FS σ {fmt(r.get('fs_sigma_test'), '.3g')}")
    return "; ".join(parts)


def _h_ricci(r):
    x = r["results"][0]
    s = f"{x['domain']}, n = {x['n']}: one RHS {fmt(x['rhs_seconds'], '.3g')} s ({x['backend']})"
    dc = next((y.get("dense_check") for y in r["results"] if y.get("dense_check")), None)
    if dc:
        keys = [k for k in dc if "ratio" in k or "speed" in k]
        if keys:
            s += f"; lazy vs dense: {keys[0]} {fmt(dc[keys[0]], '.3g')}"
    return s


def _h_distributed(r):
    st = r["steps"]
    same_it = all(x["cg_iterations_in_process"] == x["cg_iterations_distributed"] for x in st)
    return (f"n = {r['n']}, k = {r['k']}, {r['workers']} workers: step time distributed / in-process "
            f"{fmt(r['step_ratio_total'], '.2f')}, steps agree to {fmt(max(x['step_rel_diff'] for x in st), '.1e')}"
            f" (CG iterations {'equal' if same_it else 'differ'})")


HEADLINES = {"peers": _h_peers, "matvec": _h_matvec, "sampling": _h_sampling, "solvers": _h_solvers,
             "cy": _h_cy, "euler": _h_euler, "nosym": _h_nosym, "dual": _h_dual,
             "gaussian_flow": _h_gaussian_flow, "metric_flows": _h_metric_flows, "ricci": _h_ricci,
             "distributed": _h_distributed}


def headline(sec: dict) -> str:
    """One line of a section's results (its error's first line when it failed)."""
    if sec["status"] != "ok":
        return f"**{sec['status']}**: " + (sec.get("error") or "").splitlines()[0].replace("|", "\\|")
    fn = HEADLINES.get(sec["name"])
    if fn is None:
        return "see JSON"
    try:
        return fn(_first_json(sec)).replace("|", "\\|")
    except (KeyError, IndexError, TypeError, ValueError, StopIteration) as exc:
        return f"see JSON (no summary: {type(exc).__name__} {exc})".replace("|", "\\|")


# ------------------------------------------------------------ the region
def render(payload: dict, source: str) -> str:
    """The README region (markers included) for ``payload`` (a bench.json), made from ``source``."""
    m, v = payload["machine"], payload["versions"]
    devs = ", ".join(f"{d.get('platform')}:{d.get('kind')}" for d in payload.get("devices", [])) or "—"
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
    absent = ", ".join(k for k, val in v.items() if val is None)
    la = m.get("load_average") or [None]
    lines = [BEGIN.format(source=source), "",
             f"*Generated from `{source}` by `python -m bench.readme {source}` — do not edit by hand.* "
             f"Run `{payload['command']}` ({payload['mode']}), started {payload['started_utc']}; "
             f"{m.get('cores')} cores ({m.get('cpu')}), {fmt(m.get('memory_gib'), '.0f')} GiB, load average "
             f"{fmt(la[0], '.1f')} at the start (shared machine: absolute seconds are noisy, ratios within one "
             f"section are side by side); devices {devs}.", "",
             f"Libraries: {libs}" + (f"; not installed: {absent}." if absent else "."), ""]
    secs = payload["sections"]
    cpu = [s.get("cpu_s") for s in secs]
    cpu_total = sum(cpu) if all(c is not None for c in cpu) else None
    lines.append(f"**All sections** ({sum(s['status'] == 'ok' for s in secs)}/{len(secs)} ok, "
                 f"{fmt(payload.get('wall_s'), '.0f')} s wall and {fmt(cpu_total, '.0f')} CPU s in all; "
                 "wall, CPU (user + system, all its processes) and peak memory (its largest process) per section):")
    lines.append("")
    lines += _table(["section", "status", "wall s", "CPU s", "peak GiB", "result"],
                    [[s["name"], s["status"], fmt(s["wall_s"], ".1f"), fmt(s.get("cpu_s"), ".1f"),
                      fmt(s["peak_rss_gib"], ".2f"), headline(s)] for s in secs])
    peers = next((s for s in secs if s["name"] == "peers" and s["status"] == "ok"), None)
    if peers:
        lines += [""] + _peers_tables(_first_json(peers))
    lines += ["", f"Made by `{payload['command']}`; plots: `{Path(source).parent}/bench.png` and one per section.",
              "", END]
    return "\n".join(lines) + "\n"


def _peers_tables(r: dict) -> list[str]:
    mv, sv = r["matvec"], r["solve"]
    by = {x["method"]: x for x in mv["rows"]}
    base = by.get("ntkflow keops", mv["rows"][0])
    out = [f"**Peers, K v** (Gaussian, d = {mv['d']}, n = {mv['n']}, float64; best of repeats after a warm-up; "
           f"error against {mv['reference']}):", ""]
    out += _table(["method", "seconds", "pairs/s", "time / ntkflow keops", "rel. error", "peak MiB"],
                  [[x["method"], fmt(x["seconds"]), fmt(x["pairs_per_s"]), fmt(x["seconds"] / base["seconds"], ".2f"),
                    fmt(x["relerr_vs_numpy"], ".1e"), fmt(1024 * x["peak_rss_gib"], ".0f")] for x in mv["rows"]])
    ref = next((x for x in sv["rows"] if x["method"] == sv["reference"]), sv["rows"][0])
    out += ["", f"**Peers, (K + λnI) α = y** (n = {sv['n']}, λ = {fmt(sv['reg'])}, iterative rtol "
            f"{fmt(sv['rtol'])}, Nyström m = {sv['m']}; one solve after a warm-up solve; residual with the dense K):", ""]
    out += _table(["method", "seconds", "time / scipy", "iterations", "rel. residual", "α error vs scipy", "peak MiB"],
                  [[x["method"], fmt(x["seconds"]), fmt(x["seconds"] / ref["seconds"], ".2f"), fmt(x.get("iterations")),
                    fmt(x["relative_residual"], ".1e"), fmt(x["relerr_alpha_vs_scipy"], ".1e"),
                    fmt(1024 * x["peak_rss_gib"], ".0f")] for x in sv["rows"]])
    for name, why in (sv.get("failed") or {}).items():
        out.append(f"| {name} | failed: " + why.splitlines()[0].replace("|", "\\|") + " | — | — | — | — | — |")
    gp = r.get("gpytorch", {})
    if not gp.get("available", False):
        out += ["", f"GPyTorch (optional) skipped: {gp.get('reason', 'not recorded')}"]
    return out


def read_region(text: str, path="README.md") -> tuple[str, str]:
    """(source, region text with markers) of the bench region in ``text``."""
    m = _BEGIN_RE.search(text)
    end = text.find(END, m.end()) if m else -1
    if m is None or end < 0:
        raise ValueError(f"{path}: no bench region; add the two lines '{BEGIN.format(source='RESULTS.json')}' "
                         f"and '{END}' where the tables belong")
    return m.group(1), text[m.start():end + len(END)] + "\n"


def update_readme(readme: Path, results: Path) -> Path:
    """Rewrite ``readme``'s bench region from ``results`` (a bench.json); everything else stays."""
    readme, results = Path(readme), Path(results)
    text = readme.read_text()
    read_region(text, readme)  # refuse early when there is no region
    m = _BEGIN_RE.search(text)
    end = text.find(END, m.end()) + len(END)
    try:
        source = str(results.resolve().relative_to(readme.resolve().parent))
    except ValueError:
        source = str(results)
    region = render(json.loads(results.read_text()), source).rstrip("\n")
    readme.write_text(text[:m.start()] + region + text[end:])
    return readme


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="bench.json of a `python -m bench` run")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--print", action="store_true", help="print the region instead of rewriting README")
    args = ap.parse_args(argv)
    if not args.results.is_file():
        ap.error(f"results: {args.results} is not a file; give the bench.json written by `python -m bench`")
    if args.print:
        sys.stdout.write(render(json.loads(args.results.read_text()), str(args.results)))
        return 0
    print(f"rewrote the bench region of {update_readme(args.readme, args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
