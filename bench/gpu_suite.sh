#!/usr/bin/env bash
# The accelerator measurements of ntkflow in one run (a GPU machine with JAX but no network, so the
# source tree is made importable as `ntkflow` without pip). Writes under $OUT:
#   solvers/bench_solvers.json  Nyström KRR n = 10⁶, d = 10, m = 10⁴, λ = 1e-6 (bench_solvers.py section a)
#   euler/bench_euler.json      Euler characteristic of a saved model on fresh points (bench_euler.py)
#   nosym/bench_nosym.json      σ against n and k on a quintic with no symmetry (bench_nosym.py)
# Usage: OUT=dir MODEL=runs/cy bash bench/gpu_suite.sh   (MODEL: a directory written by `ntkflow cy -o`)
# The defaults are the settings of the H200 figures in bench/results/gpu/ (about 6 min with the start).
# Sizes can be lowered for a smoke test: A_N, EULER_N, EULER_BUDGET, NOSYM_N, NOSYM_K, NOSYM_TEST, NOSYM_BUDGET.
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-gpu_out}
MODEL=${MODEL:-runs/gpu_model}
PY=${PY:-python3}
mkdir -p "$OUT"
if ! (cd / && $PY -c "import ntkflow.cy") 2>/dev/null; then
  PKG=$(mktemp -d); mkdir "$PKG/ntkflow"; cp -r ntkflow/. "$PKG/ntkflow/"
  for p in engine solvers manifolds ntk cy ricci experiments; do ln -s "$PWD/$p" "$PKG/ntkflow/$p"; done
  export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import jax, ntkflow; print('jax', jax.__version__, jax.devices())" || exit 1
echo "== Nyström KRR =="
timeout ${A_TIMEOUT:-150} $PY bench/bench_solvers.py --out "$OUT/solvers" --full --sections a ${A_N:+--a-n $A_N} ${A_M:+--a-m $A_M}
echo "== Euler characteristic =="
timeout ${EULER_TIMEOUT:-200} $PY bench/bench_euler.py --model "$MODEL" --n ${EULER_N:-1000000} --chunk ${EULER_CHUNK:-4096} \
  --budget ${EULER_BUDGET:-50} --out "$OUT/euler"
echo "== no-symmetry quintic =="
timeout ${NOSYM_TIMEOUT:-300} $PY bench/bench_nosym.py --out "$OUT/nosym" --n ${NOSYM_N:-1e5 1e6} --k ${NOSYM_K:-6} \
  --n-test ${NOSYM_TEST:-50000} --backend jax --budget ${NOSYM_BUDGET:-30} --max-steps ${NOSYM_STEPS:-8} --cg-maxiter ${NOSYM_CG:-60}
ls -la "$OUT"/*
