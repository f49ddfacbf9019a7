"""Markdown table of the CICY runs of bench/cicy_sigma.sh: reads bench/results/cicy/*.json (metrics.json of
``ntkflow cy``) and prints one row per run, sorted by manifold and k (wall: ``timings.total``, or
``wall_to_last_iteration_s`` where a run was finished by ``--resume`` or ran across a pause of the machine, see
its ``note``; null: no clean timing). Usage: python bench/cicy_table.py [DIR]"""
from __future__ import annotations

import json
import pathlib
import sys


def rows(directory: pathlib.Path):
    out = []
    for path in sorted(directory.glob("*.json")):
        m = json.loads(path.read_text())
        info, data = m["method_info"], m["settings"]["data"]
        member = ("random (seed %d)" % data["cicy_seed"] if data.get("cicy_seed") is not None else
                  "ψ = %g" % data["psi"][0] if data.get("psi") else "Fermat type")
        if info.get("link", "log") != "log":
            member += f", {info['link']} link"
        if info.get("product_dtype", "float64") != "float64":
            member += f", {info['product_dtype']} products"
        out.append((data["manifold"], member, m["k"], info["n_sections"], info["n_monomials"], info["n_parameters"],
                    data["n_train"], m["fs_baseline"]["sigma_test"], m["sigma_test"], m["sigma_train"], m["iterations"],
                    m["wall_to_last_iteration_s"] if "wall_to_last_iteration_s" in m else m["timings"]["total"],
                    path.stem))
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    here = pathlib.Path(argv[0]) if argv else pathlib.Path(__file__).parent / "results" / "cicy"
    print("| manifold | member | k | sections (of monomials) | parameters | n_train | σ FS | σ held-out | σ train | "
          "iterations | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows(here):
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} ({r[4]}) | {r[5]} | {r[6]} | {r[7]:.3f} | **{r[8]:.4f}** | {r[9]:.4f} | "
              f"{r[10]} | {'— (see note)' if r[11] is None else f'{r[11]:.0f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
