"""The engine: cluster backends, data sources, training, artifacts and scoring.

Plain Python with no Airflow import, usable from a CLI, tests and notebooks.
"""
