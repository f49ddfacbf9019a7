"""ntkflow's benchmarks (not installed; run from the repository root): ``python -m bench --quick|--full``
runs every section (:mod:`bench.suite`), ``python -m bench.readme RESULTS.json`` rewrites README's
performance tables from a run's JSON (:mod:`bench.readme`). The scripts ``bench/bench_*.py`` also run
on their own."""
