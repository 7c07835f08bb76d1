"""`make bench`: the project against the baselines a user would otherwise use, in one run.

One small module per benchmark (readiness, pipeline, scoring_throughput, imports; memory is
sampled during the pipeline runs); ``run.py`` starts the local services once, runs them
interleaved with their baselines and writes ``results.json``, ``BENCHMARKS.md`` and a plot.
"""
