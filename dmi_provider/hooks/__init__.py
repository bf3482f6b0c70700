"""Airflow connections -> credentials for registries and the tracking database."""
