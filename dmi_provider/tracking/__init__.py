"""Mirror history and current state (SQLAlchemy). Plain Python: no Airflow import here."""
