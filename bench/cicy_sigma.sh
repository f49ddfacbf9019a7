#!/usr/bin/env bash
# Held-out σ against k on the CICY presets (docs/cy.md, "Complete intersections"). One run per line of RUNS,
# sequential, under nice; each writes OUT/<name>/ (model, metrics) and copies metrics.json to
# bench/results/cicy/<name>.json. Usage: bench/cicy_sigma.sh OUT [name-filter-regex]
set -u
OUT=${1:?output directory}
FILTER=${2:-.}
HERE=$(cd "$(dirname "$0")" && pwd)
RES="$HERE/results/cicy"
mkdir -p "$OUT" "$RES"
# One BLAS thread per run: on the shared 2-core machine OpenBLAS's two threads spin against the other processes —
# measured side by side under load, the (90000, 99) complex GEMM of a CG product took 0.13 s with one thread and
# 0.39–1.36 s with two (the runs before the *_n<points> ones used the default, two).
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# name | options (always with --n-curvature 0 --seed 0; the Fermat- and Dwork-type members with --symmetry none:
# this table is the full-H matrix-free path, bench/cicy_sym.sh the symmetric dense one; the later, larger runs stop after 4 iterations: the
# loss of the first ones had stopped moving after 3-4). bicubic_fermat_k3 and p5-33_random0_k4 were not run yet
# (≈ 25 min each on the loaded 2-core machine).
RUNS=(
  "bicubic_fermat_k1|--symmetry none --manifold bicubic -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "bicubic_random0_k1|--manifold bicubic --cicy-seed 0 -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "tetraquadric_fermat_k1|--symmetry none --manifold tetraquadric -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "tetraquadric_random0_k1|--manifold tetraquadric --cicy-seed 0 -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_fermat_k1|--symmetry none --manifold p5-33 -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_random0_k1|--manifold p5-33 --cicy-seed 0 -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_psi0.5_k1|--symmetry none --manifold p5-33 --psi 0.5 -k 1 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_psi0.5_k2|--symmetry none --manifold p5-33 --psi 0.5 -k 2 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_random0_k2|--manifold p5-33 --cicy-seed 0 -k 2 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_fermat_k2|--symmetry none --manifold p5-33 -k 2 --n-train 20000 --n-test 10000 --max-iter 6"
  "bicubic_random0_k2|--manifold bicubic --cicy-seed 0 -k 2 --n-train 20000 --n-test 10000 --max-iter 6"
  "bicubic_fermat_k2|--symmetry none --manifold bicubic -k 2 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_psi0.5_k3|--symmetry none --manifold p5-33 --psi 0.5 -k 3 --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_random0_k3|--manifold p5-33 --cicy-seed 0 -k 3 --n-train 20000 --n-test 10000 --max-iter 6"
  "tetraquadric_random0_k2|--manifold tetraquadric --cicy-seed 0 -k 2 --n-train 30000 --n-test 10000 --max-iter 6"
  "p5-33_psi0.5_k4|--symmetry none --manifold p5-33 --psi 0.5 -k 4 --n-train 40000 --n-test 10000 --max-iter 3"
  "bicubic_random0_k3|--manifold bicubic --cicy-seed 0 -k 3 --n-train 30000 --n-test 10000 --max-iter 4"
  "p5-33_fermat_k3|--symmetry none --manifold p5-33 -k 3 --n-train 20000 --n-test 10000 --max-iter 4"
  "tetraquadric_fermat_k2|--symmetry none --manifold tetraquadric -k 2 --n-train 30000 --n-test 10000 --max-iter 4"
  "bicubic_fermat_k3|--symmetry none --manifold bicubic -k 3 --n-train 30000 --n-test 10000 --max-iter 4"
  "p5-33_random0_k4|--manifold p5-33 --cicy-seed 0 -k 4 --n-train 40000 --n-test 10000 --max-iter 4"
  "p5-33_psi0.5_k2_identity|--symmetry none --manifold p5-33 --psi 0.5 -k 2 --link identity --n-train 20000 --n-test 10000 --max-iter 6"
  "p5-33_psi0.5_k3_identity|--symmetry none --manifold p5-33 --psi 0.5 -k 3 --link identity --n-train 20000 --n-test 10000 --max-iter 6"
  # the random members at more points (held-out σ ≤ 0.02 in 30 min, issue #14): one BLAS thread per process
  # (OPENBLAS_NUM_THREADS below) and float32 products; the loss stops moving after 2–3 iterations
  "p5-33_random0_k4_n80000|--manifold p5-33 --cicy-seed 0 -k 4 --n-train 80000 --n-test 10000 --max-iter 4 --product-dtype float32"
  "bicubic_random0_k3_n90000|--manifold bicubic --cicy-seed 0 -k 3 --n-train 90000 --n-test 10000 --max-iter 4 --product-dtype float32"
  # k + 1 where k stops short (bicubic k = 3 ≈ 0.024 at any n): as many points as fit 3 GB (peak ≈ 2.5 GB)
  "bicubic_random0_k4_n75000|--manifold bicubic --cicy-seed 0 -k 4 --n-train 75000 --n-test 10000 --max-iter 4 --product-dtype float32"
  "tetraquadric_random0_k3_n70000|--manifold tetraquadric --cicy-seed 0 -k 3 --n-train 70000 --n-test 10000 --max-iter 4 --product-dtype float32"
  # iteration 4 (60 CG iterations) raised the held-out σ of the k + 1 runs above: stop after 3
  "bicubic_random0_k4_n75000_it3|--manifold bicubic --cicy-seed 0 -k 4 --n-train 75000 --n-test 10000 --max-iter 3 --product-dtype float32"
  "tetraquadric_random0_k3_n70000_it3|--manifold tetraquadric --cicy-seed 0 -k 3 --n-train 70000 --n-test 10000 --max-iter 3 --product-dtype float32"
  "p5-33_random0_k4_n100000_it3|--manifold p5-33 --cicy-seed 0 -k 4 --n-train 100000 --n-test 10000 --max-iter 3 --product-dtype float32"
)
for line in "${RUNS[@]}"; do
  name=${line%%|*}; opts=${line#*|}
  [[ "$name" =~ $FILTER ]] || continue
  [ -f "$RES/$name.json" ] && { echo "skip $name (have $RES/$name.json)"; continue; }
  echo "=== $name: ntkflow cy $opts --n-curvature 0 --seed 0 -o $OUT/$name  ($(date -u +%H:%M:%S))"
  # shellcheck disable=SC2086
  nice -n 19 ntkflow cy $opts --n-curvature 0 --seed 0 -o "$OUT/$name" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 2 "$OUT/$name.log"
  [ $rc -eq 0 ] && cp "$OUT/$name/metrics.json" "$RES/$name.json"
done
