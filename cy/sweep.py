"""Moduli sweeps: one CY fit per member of a family, each warm-started from the previous one.

``ntkflow cy --manifold dwork-quintic --psi 0,0.1,...,0.9`` runs :func:`run_sweep`: for ψ_1, ψ_2, … in the
order given, the job of :func:`ntkflow.cy.job.run_cy` on X_ψ = {Σ z_i⁵ − 5ψ Π z_i = 0}, written to its own
subdirectory ``OUT/psi_<ψ>`` (metrics.json, history.json, convergence.png, the model: ``ntkflow.load`` reads
each), and one table σ(ψ) — ``OUT/sweep.json`` (rows and a markdown table), ``OUT/sweep.md`` and
``OUT/sweep.png`` — rewritten after every ψ.

Warm start. The potential φ = s†Hs/|z|^{2k} lives in the degree-k (k,k) functions invariant under a group
Γ. The points (hence the whitening of the basis) change with ψ, and ψ = 0 (Fermat: all of (Z_5)^5 phases)
has a larger group than ψ ≠ 0 (phases with Σ a_i ≡ 0), so every ψ of a sweep uses the *common* group of
the listed members (:func:`common_symmetry`: the intersection of the detected groups) and the same
invariant basis; the fitted function is carried over as an ambient function through its monomial-basis
coefficients H (:func:`ntkflow.cy.job.basis_coefficients`) and projected on the next ψ's whitened basis
(the warm start of ``run_cy``). Only the dense Bergman path warm-starts; the others run cold, with a note.

Resume. ``resume=True`` (``--resume``) skips every ψ whose row is finished in ``sweep.json`` (same list,
settings, group and start), continues an interrupted ψ from its checkpoint, and runs the rest; the warm
start of the next ψ is read back from the finished ψ's saved model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass

import matplotlib
import numpy as np

from ntkflow.cy.basis import Symmetry, detect_symmetry, no_symmetry
from ntkflow.cy.config import CYConfig, DataConfig
from ntkflow.cy.job import cicy_symmetry, jsonable, make_manifold, run_cy, symmetry_fingerprint
from ntkflow.cy.model import load
from ntkflow.manifolds.cicy import CompleteIntersection
from ntkflow.io import atomic_json, atomic_text, atomic_write

__all__ = ["SweepResult", "parse_psi_list", "check_psi_list", "common_symmetry", "family_symmetry", "psi_label", "run_sweep",
           "sweep_markdown", "SWEEP_FORMAT"]

SWEEP_FORMAT = "ntkflow-cy-sweep"
#: the columns of the sweep table: (key of a row, header, format)
COLUMNS = (("psi", "ψ", "{}"), ("sigma_test", "σ held-out", "{:.3e}"), ("sigma_train", "σ train", "{:.3e}"),
           ("kappa", "κ", "{:.6g}"), ("iterations", "iterations", "{}"), ("fit_seconds", "fit s", "{:.2f}"),
           ("total_seconds", "total s", "{:.1f}"), ("start", "start", "{}"), ("status", "status", "{}"))


@dataclass(frozen=True)
class SweepResult:
    """rows: one dict per ψ (the table; ``results`` of this call, None for a ψ skipped on resume);
    out_dir: the sweep's directory."""

    rows: tuple
    results: tuple
    out_dir: str | None
    symmetry: Symmetry | None


def _number(text: str) -> complex:
    return complex(text.strip().replace(" ", "").replace("i", "j"))


def parse_psi_list(text: str) -> tuple:
    """``--psi`` on the command line: one number (``0.5``, ``0.3+0.1j``) or a comma list (``0,0.1,0.2``).

    Returns a tuple of complex numbers; an argparse error (exit 2, naming --psi) for an empty entry, a
    non-number, a repeated value or a non-finite one."""
    parts = text.split(",")
    out = []
    for i, part in enumerate(parts):
        if not part.strip():
            raise argparse.ArgumentTypeError(
                f"entry {i + 1} of {text!r} is empty; expected one number like 0.5 or a comma list like 0,0.1,0.2")
        try:
            z = _number(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"entry {i + 1} of {text!r} is {part.strip()!r}, not a number; expected one number like 0.5 or "
                f"0.3+0.1j, or a comma list like 0,0.1,0.2") from None
        if not (math.isfinite(z.real) and math.isfinite(z.imag)):
            raise argparse.ArgumentTypeError(f"entry {i + 1} of {text!r} is not finite; give finite values of ψ")
        if z in out:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} appears twice in {text!r}; list each ψ once (the sweep writes one directory per ψ)")
        out.append(z)
    return tuple(out)


def check_psi_list(psis, *, manifold: str, hypersurface=None, random_quintic=None) -> None:
    """Refuse (ValueError naming --psi) a list of ψ for something that is not a preset family, or a member
    that is singular (the conifold ψ⁵ = 1 of the Dwork quintic) — before anything runs."""
    if hypersurface is not None or random_quintic is not None:
        raise ValueError(f"psi: --psi {','.join(psi_label(p)[4:] for p in psis)} sweeps a preset family "
                         f"(--manifold dwork-quintic); it does not apply to --hypersurface/--random-quintic.")
    for p in psis:
        try:
            make_manifold_for(manifold, p)
        except ValueError as exc:
            raise ValueError(f"psi: --psi {','.join(psi_label(q)[4:] for q in psis)}: the value {psi_label(p)[4:]} "
                             f"is refused: {exc}") from None


def make_manifold_for(manifold: str, psi):
    """The preset ``manifold`` at ``psi`` (refused with the preset's message when it has no family parameter
    or X_ψ is singular, e.g. the conifold ψ⁵ = 1 of the Dwork quintic)."""
    return make_manifold(DataConfig(manifold=manifold, psi=psi))


def psi_label(psi) -> str:
    """The subdirectory name of a ψ: ``psi_0.1``, ``psi_0.3+0.1j`` (shortest exact repr of the value)."""
    z = complex(psi)
    re = repr(float(z.real))
    if re.endswith(".0"):
        re = re[:-2]
    if z.imag == 0:
        return f"psi_{re}"
    im = repr(float(z.imag))
    if im.endswith(".0"):
        im = im[:-2]
    return f"psi_{re}{'' if im.startswith('-') else '+'}{im}j"


def common_symmetry(groups) -> Symmetry:
    """The intersection of groups of one family (same coordinates and phase modulus): phase elements and
    permutations in every group, conjugation when every group has it. A family whose members have
    different phase moduli gets the trivial phase group."""
    groups = list(groups)
    if not groups:
        raise ValueError("groups: expected at least one Symmetry, received none.")
    n = groups[0].phases.shape[1]
    if any(g.phases.shape[1] != n for g in groups):
        raise ValueError(f"groups: the symmetries act on different numbers of coordinates "
                         f"{sorted({g.phases.shape[1] for g in groups})}; a sweep stays in one family.")
    first = groups[0]
    if all(g.modulus == first.modulus for g in groups):
        rows = [tuple(r) for r in first.phases.tolist()]
        for g in groups[1:]:
            have = {tuple(r) for r in g.phases.tolist()}
            rows = [r for r in rows if r in have]
        phases, modulus = np.asarray(rows, dtype=np.int64).reshape(-1, n), first.modulus
    else:
        trivial = no_symmetry(n)
        phases, modulus = trivial.phases, trivial.modulus
    perms = [tuple(p) for p in first.perms.tolist()]
    for g in groups[1:]:
        have = {tuple(p) for p in g.perms.tolist()}
        perms = [p for p in perms if p in have]
    return Symmetry(phases=phases, modulus=int(modulus), perms=np.asarray(perms, dtype=np.int64).reshape(-1, n),
                    conjugation=all(g.conjugation for g in groups), sizes=first.sizes)


def family_symmetry(manifold):
    """The detected group of one member: :func:`detect_symmetry` of a hypersurface, the product group
    (:func:`ntkflow.cy.job.cicy_symmetry`) of a complete intersection."""
    if isinstance(manifold, CompleteIntersection):
        return cicy_symmetry(manifold)
    return detect_symmetry(manifold.exponents, manifold.coefficients)


def sweep_markdown(rows) -> str:
    """The sweep table in markdown (one line per ψ; a ψ not yet run shows dashes)."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append("—" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(path, rows, title):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pyplot after choosing the backend

    done = [r for r in rows if r.get("sigma_test") is not None]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    if done:
        x = [r["psi_real"] for r in done]
        ax[0].semilogy(x, [r["sigma_test"] for r in done], "o-", label="σ held-out")
        ax[0].semilogy(x, [r["fs_sigma_test"] for r in done], "s--", label="σ Fubini–Study")
        colors = ["tab:green" if r["start"] == "warm" else "tab:gray" for r in done]
        ax[1].bar(range(len(done)), [r["iterations"] for r in done], color=colors)
        ax[1].set_xticks(range(len(done)), [r["psi"] for r in done], rotation=45)
        ax[0].legend()
    ax[0].set_xlabel("Re ψ")
    ax[0].set_ylabel("σ")
    ax[0].set_title(title)
    ax[1].set_xlabel("ψ (green: warm start, grey: cold)")
    ax[1].set_ylabel("Levenberg–Marquardt iterations")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
    finally:
        plt.close(fig)


def _row(psi, metrics, start, seconds_wall) -> dict:
    t = metrics.get("timings", {})
    fit = t.get("gauss_newton", t.get("t_operator", t.get("train")))
    return {"psi": psi_label(psi)[4:], "psi_real": complex(psi).real, "psi_imag": complex(psi).imag,
            "dir": psi_label(psi), "sigma_test": metrics["sigma_test"], "sigma_train": metrics.get("sigma_train"),
            "kappa": metrics["kappa"], "iterations": metrics["iterations"], "fit_seconds": fit,
            "total_seconds": t.get("total"), "wall_seconds": seconds_wall, "start": start,
            "hessian_seconds": t.get("hessians"), "warm_start_seconds": t.get("warm_start"),
            "status": metrics["status"]["name"], "converged": metrics["converged"],
            "fs_sigma_test": metrics["fs_baseline"]["sigma_test"], "done": True,
            "warm_start": (metrics.get("method_info") or {}).get("warm_start")}


def _fingerprint(config: CYConfig, psis, warm: bool, sym) -> str:
    """Of the whole sweep: the settings without ψ (and without where it stops), the list, the group, the start."""
    base = config.with_(psi=None) if config.data.psi is not None else config
    d = {"config": base.fingerprint(), "psis": [[complex(p).real, complex(p).imag] for p in psis], "warm": warm,
         "group": None if sym is None else symmetry_fingerprint(sym)}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def run_sweep(config: CYConfig, psis, out_dir: str | None, *, warm: bool = True, resume: bool = False,
              quiet: bool = False, cluster=None, hooks=()) -> SweepResult:
    """One :func:`~ntkflow.cy.job.run_cy` per ψ in ``psis`` (in order), each in ``out_dir/psi_<ψ>``, warm-started
    from the previous ψ's fitted potential when ``warm`` (see the module docstring); the table σ(ψ), κ,
    iterations, fit and total seconds, warm/cold per ψ in ``sweep.json``/``sweep.md``/``sweep.png``.

    ``config.data.manifold`` names the family (its ``psi`` is replaced by each ψ); ``hooks`` go to every run
    (tests interrupt one with a hook that raises KeyboardInterrupt)."""
    if not isinstance(config, CYConfig):
        raise TypeError(f"config: expected a CYConfig, received {type(config).__name__}.")
    psis = tuple(complex(p) for p in psis)
    if len(psis) == 0:
        raise ValueError("psi: --psi needs at least one value, received an empty list.")
    if len(set(psis)) != len(psis):
        raise ValueError(f"psi: --psi lists a value twice ({[psi_label(p)[4:] for p in psis]}); list each ψ once.")
    check_psi_list(psis, manifold=config.data.manifold, hypersurface=config.data.hypersurface,
                   random_quintic=config.data.random_quintic)
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    method = config.method
    sym = None
    if getattr(method, "symmetry", "none") == "auto":
        sym = common_symmetry(family_symmetry(make_manifold_for(config.data.manifold, p)) for p in psis)
    fp = _fingerprint(config, psis, warm, sym)
    rows = [{"psi": psi_label(p)[4:], "psi_real": p.real, "psi_imag": p.imag, "dir": psi_label(p), "done": False}
            for p in psis]
    path = None if out_dir is None else os.path.join(out_dir, "sweep.json")
    if resume:
        if path is None or not os.path.exists(path):
            raise ValueError(f"resume: there is no sweep {path!r} to resume (the sweep never finished its first ψ's "
                             f"setup, or -o names another directory); rerun without --resume to start afresh.")
        with open(path) as f:
            old = json.load(f)
        if old.get("fingerprint") != fp:
            raise ValueError(f"resume: {path} was written by another sweep (a different --psi list, settings, group "
                             f"or --sweep-start; fingerprint {old.get('fingerprint')} != {fp}); rerun with the same "
                             f"options, or without --resume / with a new -o.")
        rows = [dict(r) for r in old["rows"]]
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    start_text = "warm (each ψ from the previous one)" if warm else "cold (every ψ from Fubini–Study)"
    log(f"ntkflow cy: moduli sweep of {config.data.manifold} over {len(psis)} values of ψ "
        f"({', '.join(r['psi'] for r in rows)}); start {start_text}")
    if sym is not None:
        log(f"  common group of the listed members (every ψ uses it): {sym.describe()}")
    title = f"{config.data.manifold}, {method.name}" + (f" k={method.k}" if hasattr(method, "k") else "")

    def save():
        if out_dir is None:
            return
        table = sweep_markdown(rows)
        atomic_json(path, jsonable({"format": SWEEP_FORMAT, "version": 1, "fingerprint": fp,
                                    "manifold": config.data.manifold, "method": method.name,
                                    "k": getattr(method, "k", None), "start": "warm" if warm else "cold",
                                    "symmetry": None if sym is None else sym.describe(),
                                    "settings": config.to_json(), "rows": rows, "table_markdown": table}), indent=1)
        atomic_text(os.path.join(out_dir, "sweep.md"), f"# {title}: σ(ψ)\n\n{table}\n")
        try:
            _plot(os.path.join(out_dir, "sweep.png"), rows, title)
        except Exception as exc:  # plotting must never lose a finished ψ
            log(f"  (sweep plot skipped: {exc})")

    save()
    results = []
    prev = None  # the previous ψ's model (warm start)
    t_sweep = time.perf_counter()
    for i, (p, row) in enumerate(zip(psis, rows)):
        sub = None if out_dir is None else os.path.join(out_dir, psi_label(p))
        if row.get("done"):
            log(f"== ψ = {row['psi']} ({i + 1}/{len(psis)}): finished before (σ held-out {row['sigma_test']:.3e}), "
                f"skipped")
            prev = load(sub) if warm else None
            results.append(None)
            continue
        carry = prev if warm else None  # run_cy uses it on the dense Bergman path, else notes a cold start
        start = "warm" if carry is not None else "cold"
        log(f"== ψ = {row['psi']} ({i + 1}/{len(psis)}): " + (f"warm start from ψ = {rows[i - 1]['psi']}"
                                                              if carry is not None else "cold start"))
        cfg = config.with_(psi=p)
        again = resume and sub is not None and os.path.exists(os.path.join(sub, "checkpoint.npz"))
        t = time.perf_counter()
        res = run_cy(cfg, sub, resume=again, quiet=quiet, hooks=hooks, cluster=cluster, symmetry=sym,
                     warm_start=carry)
        ws = (res.metrics.get("method_info") or {}).get("warm_start")
        if start == "warm" and not (ws and ws.get("used")):
            start = "cold"  # refused (no better than cold) or a path without warm starts
        rows[i] = _row(p, res.metrics, start, time.perf_counter() - t)
        results.append(res)
        prev = res.model
        save()
    log(f"\nσ(ψ) of {title} ({time.perf_counter() - t_sweep:.1f} s):\n{sweep_markdown(rows)}")
    if out_dir is not None:
        log(f"  wrote {out_dir}/sweep.json, sweep.md, sweep.png and one directory per ψ (ntkflow.load(DIR))")
    return SweepResult(rows=tuple(rows), results=tuple(results), out_dir=out_dir, symmetry=sym)
