"""Benchmarks, each run from the repository root as a module: `python -m bench.NAME`.

Their results go to bench/results/; `python -m bench.report` renders them into BENCHMARKS.md.
"""
