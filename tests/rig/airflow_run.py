"""Run one DAG of the DAG folder with dag.test() in a fresh interpreter, print its outcome as JSON.

    python -m tests.rig.airflow_run DAG_ID [CONF_JSON]

The caller sets AIRFLOW_HOME, the DAG folder, the metadata DB, DMI_CONFIG and connections in the
environment, and has run `airflow db migrate` once.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if len(sys.argv) < 2:  # just list what the folder makes
        dags = {}
        for dag_id in bag.dag_ids:
            dag = bag.get_dag(dag_id)
            timetable = dag.timetable
            dags[dag_id] = {
                "timetable": type(timetable).__name__,
                "interval": str(getattr(timetable, "delta", None)),
                "catchup": dag.catchup, "max_active_runs": dag.max_active_runs, "tags": sorted(dag.tags),
                "start_date": dag.start_date.isoformat() if dag.start_date else None,
                "tasks": sorted(dag.task_ids), "params": sorted(dag.params.keys()), "doc_md": dag.doc_md,
            }
        print(json.dumps({"dags": dags, "import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
        return 0
    dag = bag.get_dag(sys.argv[1])
    if dag is None:
        print(json.dumps({"error": f"no DAG {sys.argv[1]}", "import_errors": {k: str(v) for k, v in
                                                                              bag.import_errors.items()}}))
        return 3
    conf = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
    logical_date = os.environ.get("DMI_TEST_LOGICAL_DATE")  # a backfill-like run for a past date
    if logical_date:
        from datetime import datetime

        run = dag.test(run_conf=conf, logical_date=datetime.fromisoformat(logical_date))
    else:
        run = dag.test(run_conf=conf)
    instances = run.get_task_instances()
    tasks = {ti.task_id: ti.state for ti in instances}
    # Mapped task groups: one entry per tag, keyed by the rendered map index (the tag).
    mapped: dict[str, dict[str, str]] = {}
    steps: dict[str, dict[str, str]] = {}  # "[section] tag" -> step -> state, across the lanes
    # The registry engine's `tag` (an EmptyOperator) never runs, so it renders no name: its group's do.
    # (rendered_map_index falls back to the number; _rendered_map_index is what was rendered, or None.)
    names = {(ti.task_id.rpartition(".")[0], ti.map_index): ti._rendered_map_index for ti in instances
             if ti._rendered_map_index}
    for ti in instances:
        if ti.map_index is not None and ti.map_index >= 0:
            name = names.get((ti.task_id.rpartition(".")[0], ti.map_index)) or str(ti.map_index)
            mapped.setdefault(ti.task_id, {})[name] = str(ti.state)
            steps.setdefault(name, {})[ti.task_id.rpartition(".")[2]] = str(ti.state)
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent, AssetModel.uri).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .filter(AssetEvent.source_run_id == run.run_id).all())
        events = [{"uri": uri, "extra": event.extra, "task": event.source_task_id} for event, uri in rows]
    print("DMI-RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tasks": tasks, "mapped": mapped,
                                      "steps": steps,
                                      # task instances that ran (a worker process in a deployment): a
                                      # hostname; what Airflow settled without running (EmptyOperator, a
                                      # group mapped over nothing) has none
                                      "ran": sorted(f"{ti.task_id}[{ti.map_index}]" for ti in instances
                                                    if ti.hostname),
                                      "asset_events": events}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
