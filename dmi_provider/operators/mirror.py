"""The five operators of a mirror task group: pull -> tag -> ensure_repository -> push -> record.

Thin: they read the context, call the registry engine, targets and tracking layers, and pass small
plain data on through XCom (plans with verified manifests, digests, counters), never credentials.
Each can be used on its own in a user's DAG; see README, "Operators".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.sdk.log import redact

from dmi_provider.config import EcrSettings
from dmi_provider.hooks.connections import registry_credentials
from dmi_provider.registry.copy import Copier, Plan
from dmi_provider.registry.errors import RegistryError
from dmi_provider.registry.reference import Reference, parse_reference
from dmi_provider.targets.endpoint import Endpoint, make_copier, target_endpoint

TagPairs = Sequence[str | Sequence[str]]


def asset_uri(target: str) -> str:
    """The Asset URI of a mirrored image: oci://host/repository:tag."""
    return f"oci://{target}"


class MirrorBaseOperator(BaseOperator):
    """What the five operators share: which image, which tags, where it goes, and the run's params."""

    template_fields: Sequence[str] = ("source", "target_repository", "target_registry")
    ui_color = "#e8f1fb"

    def __init__(self, *, source: str, tags: TagPairs, target_repository: str, target: str = "ecr",
                 target_registry: str | None = None, platforms: Sequence[str] = (),
                 insecure_registries: Sequence[str] = (), source_conn_id: str | None = None,
                 target_conn_id: str | None = None, aws_conn_id: str | None = "aws_default", engine: str = "registry",
                 ecr_settings: EcrSettings | None = None, section: str | None = None,
                 docker_url: str | None = None, docker_conn_id: str | None = None, keep_local_images: bool = False,
                 tracking_conn_id: str | None = None, pull_task_id: str = "pull", push_task_id: str = "push",
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.source = source
        self.tags = [(t, t) if isinstance(t, str) else (t[0], t[1]) for t in tags]
        self.target_repository = target_repository
        self.target = target
        self.target_registry = target_registry
        self.platforms = tuple(platforms)
        self.insecure_registries = tuple(insecure_registries)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.aws_conn_id = aws_conn_id
        self.engine = engine
        self.ecr_settings = ecr_settings or EcrSettings()
        self.section = section or self.task_id
        self.docker_url = docker_url
        self.docker_conn_id = docker_conn_id
        self.keep_local_images = keep_local_images
        self.tracking_conn_id = tracking_conn_id
        self.pull_task_id = pull_task_id
        self.push_task_id = push_task_id

    # -- the run's params --------------------------------------------------------------------
    @staticmethod
    def run_params(context: Any) -> tuple[bool, bool, list[str]]:
        params = context.get("params") or {}
        return bool(params.get("force", False)), bool(params.get("dry_run", False)), list(params.get("sections") or [])

    def skip_unless_selected(self, context: Any) -> None:
        sections = self.run_params(context)[2]
        if sections and self.section not in sections:
            raise AirflowSkipException(f"section [{self.section}] is not in this run's sections: {sections}")

    def pulled(self, context: Any) -> dict | None:
        return context["ti"].xcom_pull(task_ids=self.pull_task_id)

    def skip_unless_copying(self, context: Any) -> dict:
        pulled = self.pulled(context)
        if pulled is None:
            raise AirflowSkipException("pull produced no plan")
        if pulled["dry_run"]:
            raise AirflowSkipException("dry run: nothing is written at the target")
        if not pulled["changed"]:
            raise AirflowSkipException("unchanged: the target already holds the source digests")
        return pulled

    # -- registries --------------------------------------------------------------------------
    def _ecr_hook(self):  # type: ignore[no-untyped-def]
        from dmi_provider.targets.ecr import ecr_hook

        return ecr_hook(self.aws_conn_id, os.environ.get("AWS_DEFAULT_REGION") or None)

    def target_endpoint(self) -> Endpoint:
        return target_endpoint(self.target, self.target_registry, self.target_conn_id, self.aws_conn_id)

    def copier(self, endpoint: Endpoint) -> Copier:
        source = parse_reference(f"{self.source}:{self.tags[0][0]}")
        return make_copier(source.registry, self.source_conn_id, endpoint, self.insecure_registries, self.log.info)

    def docker_api(self):  # type: ignore[no-untyped-def]
        """The daemon's APIClient through the docker provider's DockerHook (which logs in with
        docker_conn_id when it is set)."""
        from airflow.providers.docker.hooks.docker import DockerHook

        url = self.docker_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return DockerHook(docker_conn_id=self.docker_conn_id, base_url=url).get_conn()

    def tracking_store(self):  # type: ignore[no-untyped-def]
        from dmi_provider.hooks.connections import tracking_url
        from dmi_provider.tracking.store import TrackingStore

        return TrackingStore(tracking_url(self.tracking_conn_id, os.environ.get("DB_PATH") or None))

    def refs(self, host: str) -> list[tuple[Reference, Reference]]:
        return [(parse_reference(f"{self.source}:{src}"), parse_reference(f"{host}/{self.target_repository}:{dst}"))
                for src, dst in self.tags]

    def guarded(self, context: Any, work: Any) -> Any:
        """Run `work`; on failure leave the reason (redacted) in XCom for record, and fail without
        retries when retrying cannot help (404, 403, bad manifests)."""
        try:
            return work()
        except (AirflowSkipException, AirflowFailException):
            raise
        except Exception as exc:
            text = str(redact(f"{type(exc).__name__}: {exc}"))
            context["ti"].xcom_push(key="error", value=text)
            if getattr(exc, "retryable", True) is False:  # RegistryError, DockerEngineError
                raise AirflowFailException(text) from None
            raise


class PullImageOperator(MirrorBaseOperator):
    """HEAD source and target; plan the copy (verified manifests) unless the target is up to date."""

    def execute(self, context: Any) -> dict:
        self.skip_unless_selected(context)
        force, dry_run, _ = self.run_params(context)
        daemon = self.engine == "docker"

        def work() -> dict:
            endpoint = self.target_endpoint()
            copier = self.copier(endpoint)
            try:
                # The docker engine decides from the same HEADs; the daemon fetches manifests itself.
                plans = [copier.plan(src, dst, platforms=self.platforms, force=force, fetch=not (dry_run or daemon))
                         for src, dst in self.refs(endpoint.host)]
            finally:
                copier.close()
            if daemon:
                self._docker_pull(plans, force, dry_run)
            for plan in plans:
                limit = (f"; rate limit {plan.ratelimit_remaining}/{plan.ratelimit_limit} left"
                         if plan.ratelimit_limit is not None else "")
                what = "to copy" if plan.changed else "unchanged"
                self.log.info("%s -> %s: %s %s%s", plan.source, plan.target, what, plan.source_digest, limit)
            return {"target_host": endpoint.host, "dry_run": dry_run, "changed": any(p.changed for p in plans),
                    "plans": [p.to_dict() for p in plans]}

        return self.guarded(context, work)

    def _docker_pull(self, plans: list[Plan], force: bool, dry_run: bool) -> None:
        from dmi_provider.engines import docker as engine

        if not force:
            # The daemon re-writes what it pushes (one platform, its own serialisation), so the target's
            # digest differs from a multi-arch source's: the history says whether this pair was mirrored.
            store = self.tracking_store()
            try:
                for plan in plans:
                    last = store.last_good(plan.target) if plan.changed and plan.target_digest else None
                    if last and (last["source_digest"], last["target_digest"]) == (plan.source_digest,
                                                                                  plan.target_digest):
                        plan.changed = False
            finally:
                store.close()
        if dry_run or not any(p.changed for p in plans):
            return
        api = self.docker_api()
        auth = _auth(registry_credentials(self.source_conn_id))
        for plan in plans:
            if plan.changed:
                engine.pull(api, plan.source, auth, self.log.info)


def _auth(creds: Any) -> dict | None:
    return {"username": creds.username, "password": creds.password} if creds else None


class TagImageOperator(MirrorBaseOperator):
    """The target references for the images to copy (registry engine: no network)."""

    def execute(self, context: Any) -> list[str]:
        self.skip_unless_selected(context)
        pulled = self.skip_unless_copying(context)
        targets = [p["target"] for p in pulled["plans"] if p["changed"]]
        api = self.docker_api() if self.engine == "docker" else None
        for plan in pulled["plans"]:
            if plan["changed"]:
                self.log.info("%s -> %s", plan["source"], plan["target"])
                if api is not None:
                    from dmi_provider.engines import docker as engine

                    self.guarded(context, lambda p=plan: engine.tag(api, p["source"], p["target"]))
        return targets


class EnsureRepositoryOperator(MirrorBaseOperator):
    """ECR: create the repository with the configured settings (existing ones are fine; differences are
    reported). Other registries create repositories on push: nothing to do."""

    def execute(self, context: Any) -> dict:
        self.skip_unless_selected(context)
        self.skip_unless_copying(context)
        if self.target != "ecr":
            self.log.info("target = %s: repositories are created on push", self.target)
            return {"repository": self.target_repository, "created": False, "differences": []}

        def work() -> dict:
            from dmi_provider.targets.ecr import ensure_repository

            outcome = ensure_repository(self._ecr_hook(), self.target_repository, self.ecr_settings)
            self.log.info("repository %s %s", self.target_repository,
                          "created" if outcome["created"] else "already exists")
            for difference in outcome["differences"]:
                self.log.warning("repository %s differs from config.ini: %s", self.target_repository, difference)
            return outcome

        return self.guarded(context, work)


class PushImageOperator(MirrorBaseOperator):
    """Copy the planned blobs and manifests, the tag last."""

    def execute(self, context: Any) -> list[dict]:
        self.skip_unless_selected(context)
        pulled = self.skip_unless_copying(context)

        if self.engine == "docker":
            return self.guarded(context, lambda: self._docker_push(pulled))

        def work() -> list[dict]:
            endpoint = self.target_endpoint()
            copier = self.copier(endpoint)
            results = []
            try:
                for data in pulled["plans"]:
                    plan = Plan.from_dict(data)
                    if not plan.changed:
                        results.append(plan.result().to_dict())
                        continue
                    try:
                        results.append(copier.execute(plan).to_dict())
                    except RegistryError:
                        # An IMMUTABLE ECR tag that already holds this digest refuses the re-push: that is success.
                        dst = parse_reference(plan.target)
                        head = copier.pool.get(dst.registry).head_manifest(dst.repository, dst.ref)
                        if head is None or head.digest != plan.source_digest or plan.filtered:
                            raise
                        self.log.info("%s already holds %s (immutable tag)", plan.target, plan.source_digest)
                        result = plan.result()
                        result.target_digest = head.digest
                        results.append(result.to_dict())
            finally:
                copier.close()
            return results

        return self.guarded(context, work)


    def _docker_push(self, pulled: dict) -> list[dict]:
        from dmi_provider.engines import docker as engine

        endpoint = self.target_endpoint()
        api = self.docker_api()
        auth = _auth(endpoint.credentials)
        results = []
        for data in pulled["plans"]:
            plan = Plan.from_dict(data)
            result = plan.result()
            if plan.changed:
                outcome = engine.push(api, plan.target, auth, self.log.info)
                result.target_digest = outcome.digest
                result.blobs_copied, result.blobs_skipped = outcome.layers_pushed, outcome.layers_existing
                if not self.keep_local_images:
                    engine.remove(api, [plan.target, plan.source], self.log.info)
            results.append(result.to_dict())
        return results


class RecordMirrorOperator(MirrorBaseOperator):
    """Always runs: one history row per image, the state rows, and an Asset event per new digest."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.outlets = [AssetAlias(self.alias_name)]

    @property
    def alias_name(self) -> str:
        return f"dmi-mirror-{self.target_repository}"

    def execute(self, context: Any) -> list[dict]:
        from dmi_provider.tracking.store import MirrorOutcome

        self.skip_unless_selected(context)
        ti = context["ti"]
        pulled = self.pulled(context)
        pushed = ti.xcom_pull(task_ids=self.push_task_id) or []
        errors = [ti.xcom_pull(task_ids=t, key="error") for t in (self.pull_task_id, self.push_task_id)]
        error = next((e for e in errors if e), None)
        run = context.get("dag_run")
        base = {"dag_id": self.dag_id, "run_id": context.get("run_id") or "", "section": self.section,
                "logical_date": context.get("logical_date") or (run.logical_date if run else None),
                "started_at": getattr(run, "start_date", None), "finished_at": datetime.now(UTC)}
        plans = (pulled or {}).get("plans") or []
        outcomes = []
        for i, (src_tag, dst_tag) in enumerate(self.tags):
            plan = plans[i] if i < len(plans) else None
            source = plan["source"] if plan else f"{self.source}:{src_tag}"
            target = plan["target"] if plan else f"{self.target_registry or '<ecr>'}/{self.target_repository}:{dst_tag}"
            result = pushed[i] if i < len(pushed) else None
            outcome = MirrorOutcome(source=source, target=target, status="failed", **base)
            if plan:
                outcome.source_digest = plan["source_digest"]
                outcome.platforms = ",".join(plan.get("platforms") or ())
                outcome.ratelimit_remaining = plan.get("ratelimit_remaining")
            if plan and (pulled or {}).get("dry_run"):
                outcome.status, outcome.target_digest = "dry-run", plan["target_digest"]
            elif plan and not plan["changed"]:
                outcome.status, outcome.target_digest = "unchanged", plan["target_digest"]
            elif plan and result and result.get("target_digest"):
                outcome.status = result["status"] if result["status"] != "dry-run" else "copied"
                outcome.target_digest = result["target_digest"]
                outcome.platforms = ",".join(result.get("platforms") or ())
                outcome.bytes_transferred = result.get("bytes_transferred", 0)
                outcome.blobs_copied = result.get("blobs_copied", 0)
                outcome.blobs_mounted = result.get("blobs_mounted", 0)
                outcome.blobs_skipped = result.get("blobs_skipped", 0)
                if result.get("ratelimit_remaining") is not None:
                    outcome.ratelimit_remaining = result["ratelimit_remaining"]
            else:
                outcome.error = error or "not copied: an upstream task failed or did not run"
            outcomes.append(outcome)

        store = self.tracking_store()
        try:
            for outcome in outcomes:
                store.record(outcome)
                self.log.info("%s -> %s: %s %s%s", outcome.source, outcome.target, outcome.status,
                              outcome.target_digest or "", f" ({outcome.error})" if outcome.error else "")
        finally:
            store.close()
        events = context["outlet_events"][AssetAlias(self.alias_name)]
        for outcome in outcomes:
            if outcome.status == "copied":
                events.add(Asset(asset_uri(outcome.target)),
                           extra={"digest": outcome.target_digest, "source": outcome.source,
                                  "source_digest": outcome.source_digest, "section": self.section})
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            # Recorded; now fail, so that the run (whose leaves are the record tasks) shows the failure.
            raise AirflowFailException("; ".join(f"{o.target}: {o.error}" for o in failed))
        return [{"target": o.target, "status": o.status, "digest": o.target_digest} for o in outcomes]
