"""What can be checked of the deployment files here (no container engine runs images on these machines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-worker", "airflow-triggerer", "airflow-init"}


def test_compose_names_every_service_and_shares_the_secrets():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert set(compose["services"]) == SERVICES
    airflow = [name for name in SERVICES if name.startswith("airflow-")]
    commands = {name: compose["services"][name].get("command") for name in airflow}
    assert commands["airflow-apiserver"] == "api-server" and commands["airflow-worker"] == "celery worker"
    assert commands["airflow-dag-processor"] == "dag-processor" and commands["airflow-triggerer"] == "triggerer"
    secrets = set()
    for name in airflow:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        secrets.add((env["AIRFLOW__API_AUTH__JWT_SECRET"], env["AIRFLOW__CORE__FERNET_KEY"]))
        assert env["AIRFLOW_CONN_DMI_TRACKING"].startswith("postgres://") and "@postgres:5432/" in \
            env["AIRFLOW_CONN_DMI_TRACKING"]
        mounts = compose["services"][name]["volumes"]
        assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins",
                "./config.ini:/opt/airflow/dmi/config.ini:ro"} <= set(mounts)
        assert not any("docker.sock" in m for m in mounts)  # the docker socket is opt-in
        assert compose["services"][name]["build"] == "."
    assert len(secrets) == 1  # one JWT secret and Fernet key for all
    for secret in (*secrets.pop(), compose["services"]["airflow-apiserver"]["environment"]["AIRFLOW__API__SECRET_KEY"]):
        assert re.fullmatch(r"\$\{AIRFLOW_[A-Z_]+:\?set AIRFLOW_[A-Z_]+ in \.env \(see README, Deploy\)\}", secret)
    assert compose["services"]["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]  # not on every interface
    override = yaml.safe_load((ROOT / "docker-compose.docker-engine.yaml").read_text())
    assert any("docker.sock" in m for m in override["services"]["airflow-worker"]["volumes"])




def test_helm_values_for_the_official_chart():
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    assert values["airflowVersion"] == "3.3.2" and values["executor"] == "CeleryExecutor"
    assert values["jwtSecretName"] == values["fernetKeySecretName"] == "dmi-secrets"
    assert {"name": "DMI_CONFIG", "value": "/opt/airflow/dmi/config.ini"} in values["env"]
    assert any(s["envName"] == "AIRFLOW_CONN_DMI_TRACKING" for s in values["secret"])
    assert values["volumeMounts"][0]["mountPath"] == "/opt/airflow/dmi"
    assert values["volumes"][0]["configMap"]["name"] == "dmi-config"
    assert values["dags"]["gitSync"]["subPath"] == "dags"
