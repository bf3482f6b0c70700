"""Airflow plugins of the provider: the scheduler's pools (scheduler.py) and the Image mirror pages
(history.py), both registered through the `airflow.plugins` entry point."""
