#!/usr/bin/env bash
# Held-out σ against k on the CICY presets with a symmetry group, on the dense symmetric path (docs/cy.md,
# "Complete intersections": symmetry on products). One run per line, sequential; each writes OUT/<name>/ and copies
# metrics.json to bench/results/cicy_sym/<name>.json; the table is printed at the end. Options of a row come after the
# defaults (--n-train 20000 ...), so a row's --n-train overrides them.
# Usage: bench/cicy_sym.sh OUT [name-filter-regex]
set -u
OUT=${1:?output directory}
FILTER=${2:-.}
HERE=$(cd "$(dirname "$0")" && pwd)
RES="$HERE/results/cicy_sym"
mkdir -p "$OUT" "$RES"
RUNS=(
  "p5-33_fermat_k4|--manifold p5-33 -k 4"
  "p5-33_fermat_k6|--manifold p5-33 -k 6"
  "p5-33_fermat_k8|--manifold p5-33 -k 8"
  "p5-33_psi0.5_k4|--manifold p5-33 --psi 0.5 -k 4"
  "p5-33_psi0.5_k6|--manifold p5-33 --psi 0.5 -k 6"
  "p5-33_psi0.5_k8|--manifold p5-33 --psi 0.5 -k 8"
  "bicubic_fermat_k4|--manifold bicubic -k 4"
  "bicubic_fermat_k6|--manifold bicubic -k 6"
  "bicubic_fermat_k8|--manifold bicubic -k 8 --n-train 30000"
  "tetraquadric_fermat_k2|--manifold tetraquadric -k 2"
  "tetraquadric_fermat_k4|--manifold tetraquadric -k 4"
  "tetraquadric_fermat_k5|--manifold tetraquadric -k 5"
  "tetraquadric_fermat_k6|--manifold tetraquadric -k 6"
  # --loss sigma: the L2 fit, then reweighting toward the L1 norm that σ is (docs/cy.md)
  "bicubic_fermat_k8_sigma|--manifold bicubic -k 8 --n-train 30000 --loss sigma"
  "tetraquadric_fermat_k6_sigma|--manifold tetraquadric -k 6 --loss sigma"
  # k = 9: 3056 independent functions, 8.8 GB of Hessians (above the 8 GB auto threshold: --solver dense), peak RSS 19 GB
  # (add --dense-chunk 2048 for 10.1 GB at the same sigma, 693 s instead of 495 s)
  "bicubic_fermat_k9_sigma|--manifold bicubic -k 9 --n-train 30000 --solver dense --loss sigma"
  # the Dwork-type members of the bicubic and the tetraquadric
  "bicubic_psi0.5_k4|--manifold bicubic --psi 0.5 -k 4"
  "bicubic_psi0.5_k6|--manifold bicubic --psi 0.5 -k 6"
  "tetraquadric_psi0.5_k4|--manifold tetraquadric --psi 0.5 -k 4"
)
for line in "${RUNS[@]}"; do
  name=${line%%|*}; opts=${line#*|}
  [[ "$name" =~ $FILTER ]] || continue
  [ -f "$RES/$name.json" ] && { echo "skip $name (have $RES/$name.json)"; continue; }
  echo "=== $name: ntkflow cy --n-train 20000 --n-test 10000 --n-curvature 0 --seed 0 $opts -o $OUT/$name  ($(date -u +%H:%M:%S))"
  # shellcheck disable=SC2086
  nice -n 5 ntkflow cy --n-train 20000 --n-test 10000 --n-curvature 0 --seed 0 $opts -o "$OUT/$name" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 1 "$OUT/$name.log"
  [ $rc -eq 0 ] && cp "$OUT/$name/metrics.json" "$RES/$name.json"
done
python - "$RES" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    d = json.load(open(f))
    i, s = d["method_info"], d["settings"]
    psi = s["data"].get("psi")  # None (Fermat type), a number, or [re, im]
    psi = complex(*psi) if isinstance(psi, list) else psi
    member = "Fermat type" if psi is None else f"ψ = {psi.real:g}" if complex(psi).imag == 0 else f"ψ = {psi}"
    nf = f'{i["n_functions"]} ({i["n_independent"]})' if "n_independent" in i else str(i["n_functions"])
    loss = s.get("lm", {}).get("loss", "l2")
    member += "" if loss == "l2" else f", --loss {loss}"
    rows.append((d["manifold"], member, d["k"], nf, i["n_kept"], s["data"]["n_train"],
                 d["fs_baseline"]["sigma_test"], d["sigma_test"], d["sigma_train"], d["iterations"],
                 d["timings"]["total"], i["symmetry"]))
rows.sort(key=lambda r: (r[0], r[1], r[2]))
print("| manifold | member | k | invariant functions (independent on X) | kept | n_train | σ FS | σ held-out | σ train | iterations | wall s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.3f} | **{r[7]:.2e}** | {r[8]:.2e} | {r[9]} | {r[10]:.0f} |")
PY
