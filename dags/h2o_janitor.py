"""Deletes ephemeral H2O clusters past their time-to-live."""

from h2o_airflow.dag_factory import janitor_dag

dag = janitor_dag()
