"""What planning hands on (items) and settles (history rows), for each kind of run."""

from __future__ import annotations

from dmi_provider import mirror
from dmi_provider.config import section_spec
from dmi_provider.mirror import Pulled
from dmi_provider.planner import SectionPlan, all_items
from dmi_provider.registry.copy import Plan

SPEC = section_spec({"image": "app", "tags": "1, 2, 3", "project": "m", "target": "registry",
                     "target-registry": "r.local:5000"}, section="app")
RUN = mirror.RunInfo("dmi_mirror", "manual__1")


def planned(*changed: bool) -> SectionPlan:
    plans = [Plan(f"docker.io/library/app:{t}", f"r.local:5000/m/app:{t}", f"sha256:{t * 64}",
                  None if c else f"sha256:{t * 64}", "application/vnd.oci.image.manifest.v1+json", changed=c)
             for t, c in zip("123", changed, strict=True)]
    return SectionPlan(SPEC, SPEC.pairs(), Pulled("r.local:5000", True, plans))


def test_only_changed_tags_are_handed_on_and_the_rest_is_recorded_unchanged():
    plan = planned(False, True, False)
    assert plan.items(force=False, dry_run=False) == [["app", "2", "2"]]
    rows = plan.settled(RUN, force=False, dry_run=False)
    assert [(r.target.rsplit(":", 1)[1], r.status, r.target_digest) for r in rows] == [
        ("1", "unchanged", "sha256:" + "1" * 64), ("3", "unchanged", "sha256:" + "3" * 64)]


def test_force_hands_on_everything_and_a_dry_run_records_everything():
    plan = planned(False, True, False)
    assert plan.items(force=True, dry_run=False) == [["app", t, t] for t in "123"]
    assert plan.settled(RUN, force=True, dry_run=False) == []
    assert plan.items(force=False, dry_run=True) == [] and plan.items(force=True, dry_run=True) == []
    assert [r.status for r in plan.settled(RUN, force=True, dry_run=True)] == ["dry-run"] * 3


def test_a_section_whose_planning_failed_goes_on_whole_to_its_copy_steps():
    failed = SectionPlan(SPEC, SPEC.pairs(), error="RegistryError: 503")
    assert failed.items(force=False, dry_run=False) == [["app", t, t] for t in "123"]
    assert failed.items(force=False, dry_run=True) == [["app", t, t] for t in "123"]  # they record the failure
    assert failed.settled(RUN, force=False, dry_run=False) == []
    unlisted = SectionPlan(SPEC, SPEC.pairs(), resolved=False, error="RegistryError: 401")
    assert all_items([unlisted, planned(True, False, False)], False, False) == [["app", None, None],
                                                                               ["app", "1", "1"]]
