"""DMI mirror DAGs for Airflow, built from config.ini (DMI_CONFIG, else config.ini beside this file).

(Airflow's safe mode parses only files that mention both "airflow" and "dag": this docstring does.)
"""

from __future__ import annotations

from dmi_provider.dag_factory import build_dags, config_path

globals().update(build_dags(config_path(__file__)))
