"""Development tooling, not shipped: the local services, their seed data and a local Airflow.

Used by ``make demo``, ``make airflow``, the tests and the benchmarks. Nothing in
``h2o_tasks`` (the engine) or ``plugins/h2o_airflow`` (the Airflow integration) imports it.
"""
