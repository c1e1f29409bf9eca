"""kubenas benchmarks: each ``bench.bench_*`` module prints its figures; ``python -m bench`` runs them all."""
