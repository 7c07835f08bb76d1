"""Airflow integration of h2o_tasks: hooks, operators, triggers and extra links.

Thin adapters in the style of Airflow's own providers: the engine (``h2o_tasks``) makes
every decision; these classes add templating, connections, XCom and deferral.
"""
