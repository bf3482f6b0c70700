"""OCI Distribution client and copy engine. Plain Python: no Airflow import here."""
