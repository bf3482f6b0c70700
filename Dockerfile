# An Airflow 3.3 image with the DMI provider installed (the wheel `pip wheel .` builds).
ARG AIRFLOW_VERSION=3.3.2

FROM apache/airflow:${AIRFLOW_VERSION} AS build
COPY --chown=airflow:root . /home/airflow/dmi-src
RUN pip wheel --no-deps --wheel-dir /home/airflow/wheels /home/airflow/dmi-src

FROM apache/airflow:${AIRFLOW_VERSION}
ARG AIRFLOW_VERSION
COPY --from=build /home/airflow/wheels /home/airflow/wheels
# Pinning apache-airflow keeps pip from changing the image's Airflow while it installs the provider.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        "$(ls /home/airflow/wheels/airflow_provider_dmi-*.whl)[postgres]" \
    && rm -rf /home/airflow/wheels
