"""The five operators as thin glue, with a fake engine and a fake target registered in the lookups:
what each task asks of the engine and target, what crosses XCom, what record writes, and how errors
turn into retries or fast failures. No registry here: the engines are tested against the rig."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from datetime import UTC, datetime

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dmi-operators-"))

from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from dmi_provider.engines import ENGINES
from dmi_provider.errors import DmiError
from dmi_provider.operators import (
    EnsureRepositoryOperator,
    PullImageOperator,
    PushImageOperator,
    RecordMirrorOperator,
    TagImageOperator,
)
from dmi_provider.registry.copy import Plan
from dmi_provider.spec import EngineSpec, Environment, MirrorSpec, SourceSpec, TargetSpec
from dmi_provider.targets import TARGETS, Endpoint, RepositoryOutcome
from dmi_provider.tracking.store import TrackingStore

SOURCE_DIGEST = "sha256:" + "a" * 64
OLD_DIGEST = "sha256:" + "b" * 64
CALLS: list[str] = []


class FakeTarget:
    kind = "fake"

    def __init__(self, job):
        self.job = job

    def endpoint(self) -> Endpoint:
        CALLS.append("endpoint")
        return Endpoint("fake.example:5000")

    def ensure_repository(self, repository: str) -> RepositoryOutcome:
        CALLS.append(f"ensure {repository}")
        return RepositoryOutcome(repository, created=True, differences=("scan: differs",))

    def check_repository(self, repository: str) -> RepositoryOutcome:
        return RepositoryOutcome(repository)

    def after_push(self, repository: str) -> str:
        CALLS.append(f"after_push {repository}")
        return "locked"


class FakeEngine:
    """Tag '1' has changed at the source, tag '2' has not; `fail` makes transfer raise."""

    name = "fake"
    fail: DmiError | None = None
    fail_on: str | None = None  # fail only the plan whose target ends with this

    def __init__(self, setup):
        self.setup = setup

    def plan(self, pairs, *, force, dry_run):
        CALLS.append(f"plan force={force} dry_run={dry_run}")
        return [Plan(str(src), str(dst), SOURCE_DIGEST, OLD_DIGEST if src.tag == "1" else SOURCE_DIGEST,
                     "application/vnd.oci.image.manifest.v1+json", changed=force or src.tag == "1",
                     ratelimit_limit=100, ratelimit_remaining=90) for src, dst in pairs]

    def stage(self, plans):
        CALLS.append(f"stage {len(plans)}")

    def tag(self, plans):
        CALLS.append(f"tag {[p.target for p in plans]}")

    def transfer(self, plans):
        CALLS.append("transfer")
        if FakeEngine.fail and (FakeEngine.fail_on is None or any(p.target.endswith(FakeEngine.fail_on)
                                                                  for p in plans)):
            raise FakeEngine.fail
        results = []
        for plan in plans:
            result = plan.result()
            if plan.changed:
                result.target_digest, result.blobs_copied, result.bytes_transferred = SOURCE_DIGEST, 2, 1234
            results.append(result)
        return results

    def close(self):
        CALLS.append("close")

class FakeTI:
    def __init__(self):
        self.xcom: dict[tuple[str, str], object] = {}
        self.task_id = ""

    def xcom_push(self, key, value):
        self.xcom[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcom.get((task_ids, key))

class Events:
    def __init__(self):
        self.added = []

    def add(self, asset, extra):
        self.added.append((asset.uri, extra))

@pytest.fixture
def group(monkeypatch, tmp_path):
    monkeypatch.setitem(ENGINES, "fake", "tests.unit.test_operators:FakeEngine")
    monkeypatch.setitem(TARGETS, "fake", "tests.unit.test_operators:FakeTarget")
    CALLS.clear()
    FakeEngine.fail = FakeEngine.fail_on = None
    spec = MirrorSpec(section="aws/proxyv2", source=SourceSpec(repository="istio/proxyv2"),
                      target=TargetSpec(kind="fake", repository="istio/proxyv2"), engine=EngineSpec(name="fake"),
                      env=Environment(db_path=str(tmp_path / "t.db")))
    common = {"spec": spec, "tags": ["1", ("2", "stable")]}
    with DAG("fake_dag", schedule=None):
        ops = {"pull": PullImageOperator(task_id="pull", **common), "tag": TagImageOperator(task_id="tag", **common),
               "ensure": EnsureRepositoryOperator(task_id="ensure", **common),
               "push": PushImageOperator(task_id="push", **common),
               "record": RecordMirrorOperator(task_id="record", **common)}
        ops["pull"] >> ops["tag"] >> ops["ensure"] >> ops["push"] >> ops["record"]
    return ops, TrackingStore(f"sqlite:///{tmp_path / 't.db'}")

def run(ops, names, params=None, ti=None):
    ti = ti or FakeTI()
    events = defaultdict(Events)
    context = {"ti": ti, "params": params or {}, "run_id": "manual__1", "dag_run": None,
               "logical_date": datetime(2026, 11, 1, tzinfo=UTC), "outlet_events": events}
    out = {}
    for name in names:
        ti.task_id = ops[name].task_id
        try:
            value = ops[name].execute(context)
        except (AirflowSkipException, AirflowException, DmiError) as exc:
            value = exc
        else:
            ti.xcom[(ti.task_id, "return_value")] = value
        out[name] = value
    return out, ti, events

def test_a_group_asks_the_engine_and_target_and_records(group):
    ops, store = group
    out, _ti, events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    assert CALLS == ["endpoint", "plan force=False dry_run=False", "stage 2", "close",
                     "tag ['fake.example:5000/istio/proxyv2:1']", "close", "ensure istio/proxyv2",
                     "transfer", "transfer", "after_push istio/proxyv2", "close"]  # one per plan: what was
    # written before a failure is known; then the settings a repository takes only once it exists (ACR's locks)
    assert out["pull"]["target_host"] == "fake.example:5000" and out["pull"]["changed"] is True
    assert out["tag"] == ["fake.example:5000/istio/proxyv2:1"]
    assert out["ensure"]["created"] is True
    assert [r["status"] for r in out["push"]] == ["copied", "unchanged"]
    assert out["record"] == [
        {"target": "fake.example:5000/istio/proxyv2:1", "status": "copied", "digest": SOURCE_DIGEST},
        {"target": "fake.example:5000/istio/proxyv2:stable", "status": "unchanged", "digest": SOURCE_DIGEST}]
    rows = {r["target"]: r for r in store.history()}
    copied = rows["fake.example:5000/istio/proxyv2:1"]
    assert (copied["blobs_copied"], copied["bytes_transferred"], copied["ratelimit_remaining"]) == (2, 1234, 90)
    assert copied["logical_date"] == datetime(2026, 11, 1, tzinfo=UTC) and copied["section"] == "aws/proxyv2"
    (alias_events,) = events.values()
    assert alias_events.added == [("oci://fake.example:5000/istio/proxyv2:1",
                                   {"digest": SOURCE_DIGEST, "source": "docker.io/istio/proxyv2:1",
                                    "source_digest": SOURCE_DIGEST, "section": "aws/proxyv2"})]

def test_dry_run_and_unselected_sections_skip(group):
    ops, store = group
    out, _ti, _events = run(ops, ["pull", "tag", "push", "record"], params={"dry_run": True})
    assert "plan force=False dry_run=True" in CALLS and not any(c.startswith("stage") for c in CALLS)
    assert isinstance(out["tag"], AirflowSkipException) and isinstance(out["push"], AirflowSkipException)
    assert {r["status"] for r in store.history()} == {"dry-run"}
    out, _ti, _events = run(ops, ["pull", "record"], params={"sections": ["other"]})
    assert all(isinstance(v, AirflowSkipException) for v in out.values())

@pytest.mark.parametrize("retryable", [False, True])
def test_a_failed_transfer_is_recorded_and_fails_the_run(group, retryable):
    ops, store = group
    FakeEngine.fail = DmiError("push refused: denied", retryable=retryable)
    out, ti, _events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    # Not retryable: fail at once; retryable: an exception Airflow retries, its one line naming the section.
    assert type(out["push"]) is (AirflowFailException if not retryable else AirflowException)
    assert str(out["push"]) == "section 'aws/proxyv2': DmiError: push refused: denied"
    assert ti.xcom[("push", "error")].startswith("DmiError: push refused: denied")
    assert isinstance(out["record"], AirflowFailException) and "push refused" in str(out["record"])
    statuses = {r["target"].rsplit(":", 1)[1]: r["status"] for r in store.history()}
    assert statuses == {"1": "failed", "stable": "unchanged"}
    assert CALLS[-1] == "close"  # the engine is closed on failure too

def test_a_tag_written_before_another_failed_is_recorded_as_copied(group):
    ops, store = group
    FakeEngine.fail, FakeEngine.fail_on = DmiError("tag 2 refused"), ":stable"
    out, ti, _events = run(ops, ["pull", "tag", "ensure", "push", "record"], params={"force": True})
    assert isinstance(out["push"], AirflowFailException)
    assert [r["target"] for r in ti.xcom[("push", "partial")]] == ["fake.example:5000/istio/proxyv2:1"]
    statuses = {r["target"].rsplit(":", 1)[1]: (r["status"], r["error"]) for r in store.history()}
    assert statuses == {"1": ("copied", None), "stable": ("failed", "DmiError: tag 2 refused")}
    assert isinstance(out["record"], AirflowFailException)  # the run still shows the failure

def test_a_retried_record_task_writes_each_row_once(group):
    ops, store = group
    _out, ti, _events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    run(ops, ["record"], ti=ti)  # Airflow runs record again (a retry, or "clear task")
    assert sorted(r["status"] for r in store.history()) == ["copied", "unchanged"]


def test_an_image_that_does_not_verify_fails_its_group_records_quarantined_and_sends_no_event(group):
    # Issue 27: the push of tag 1 is refused by verification; tag 2 (unchanged) is kept; the record task writes
    # the quarantined row with its reason and sends no Asset event for it.
    from dmi_provider.registry.gate import RejectedImage

    ops, store = group
    FakeEngine.fail = RejectedImage("no signature by any of verify-keys for sha256:…: quarantined at "
                                    "fake.example:5000/quarantine/istio/proxyv2:1", outcome="quarantined")
    FakeEngine.fail_on = ":1"
    out, _ti, events = run(ops, ["pull", "tag", "ensure", "push", "record"])
    assert isinstance(out["push"], AirflowFailException)  # not retried: the same bytes fail again
    assert "quarantined at fake.example:5000/quarantine/istio/proxyv2:1" in str(out["push"])
    assert isinstance(out["record"], AirflowFailException)
    rows = {r["target"].rsplit(":", 1)[1]: r for r in store.history()}
    assert rows["1"]["status"] == "quarantined" and "no signature by any of verify-keys" in rows["1"]["error"]
    assert rows["1"]["target_digest"] is None
    assert rows["stable"]["status"] == "unchanged"
    assert not any(e.added for e in events.values())
