"""engine = docker: pull, tag and push through a Docker daemon with the docker SDK, reached through the
docker provider's DockerHook.

The daemon re-writes what it pushes (one platform, its own serialisation), so the target's digest is not
the source's: whether a source changed is decided from the same HEAD requests as the registry engine
plus the tracking history of the (source digest, target digest) pair.

docker-py does not raise on registry errors inside a pull or push stream: every event is read, and an
event that carries `error` raises a typed error (DockerRefused for what a retry cannot fix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Any

import docker

from dmi_provider.engines.base import EngineSetup, open_copier
from dmi_provider.errors import DmiError
from dmi_provider.registry.auth import Credentials, CredentialSource
from dmi_provider.registry.copy import Copier, CopyResult, Plan
from dmi_provider.registry.reference import Reference

Say = Callable[[str], None]
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64})")
# The daemon prints a registry's error as "<code>: <message>", the code as distribution spells it.
_CODE_RE = re.compile(r"^([a-z][a-z ]+?): ")
_REFUSING_CODES = {"unauthorized", "denied", "name unknown", "name invalid", "manifest unknown", "manifest invalid",
                   "blob unknown", "tag invalid", "unsupported", "digest invalid", "size invalid"}
# What the daemon itself says (no registry code) when a login is missing or refused.
_REFUSING_DAEMON = ("pull access denied", "no basic auth credentials", "authentication required",
                    "repository does not exist")


class DockerEngineError(DmiError):
    """A daemon or registry failure seen through the daemon; retried by default."""

    retryable = True


class DockerRefused(DockerEngineError):
    """A refusal that a retry cannot fix: unauthorized, denied, unknown, invalid."""

    retryable = False


def stream_error(what: str, message: str) -> DockerEngineError:
    code = _CODE_RE.match(message.lower())
    refused = (code is not None and code.group(1) in _REFUSING_CODES) or any(
        phrase in message.lower() for phrase in _REFUSING_DAEMON)
    return (DockerRefused if refused else DockerEngineError)(f"{what}: {message}")


def api_error(what: str, exc: docker.errors.APIError) -> DockerEngineError:
    status = exc.status_code or 0
    refused = 400 <= status < 500 and status not in (408, 429)
    return (DockerRefused if refused else DockerEngineError)(f"{what}: {exc.explanation or exc}")


def split(reference: str) -> tuple[str, str]:
    """`host/repo:tag` -> (`host/repo`, `tag`)."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon <= slash:
        return reference, "latest"
    return reference[:colon], reference[colon + 1 :]


def _auth(login: Credentials | CredentialSource | None) -> dict | None:
    """The daemon's auth config for a login as of now (a cloud's token source is asked)."""
    creds = login() if callable(login) else login
    if creds is None:
        return None
    if creds.refresh_token:  # the daemon runs the OAuth2 exchange itself with an identity token
        return {"username": creds.username, "identitytoken": creds.password}
    return {"username": creds.username, "password": creds.password}


class DockerEngine:
    name = "docker"

    def __init__(self, setup: EngineSetup, api: docker.APIClient | None = None):
        self.setup = setup
        self.say = setup.hooks.say
        if api is not None:
            self.__dict__["api"] = api

    @cached_property
    def copier(self) -> Copier:
        return open_copier(self.setup)  # HEAD requests only

    @cached_property
    def api(self) -> docker.APIClient:
        from airflow.providers.docker.hooks.docker import DockerHook

        daemon = self.setup.spec.engine
        url = daemon.docker_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return DockerHook(docker_conn_id=daemon.docker_conn_id, base_url=url).get_conn()

    # -- the steps ----------------------------------------------------------------------------------
    def plan(self, pairs: Sequence[tuple[Reference, Reference]], *, force: bool, dry_run: bool) -> list[Plan]:
        # The daemon fetches manifests itself: HEADs only here.
        plans = [self.copier.plan(src, dst, force=force, fetch=False) for src, dst in pairs]
        if not force and self.setup.hooks.history is not None:
            for plan in plans:
                if plan.changed and plan.target_digest and self._mirrored_before(plan):
                    plan.changed = False
                    self.say(f"{plan.source} -> {plan.target}: unchanged (history: {plan.source_digest} was "
                             f"pushed as {plan.target_digest})")
        return plans

    def _mirrored_before(self, plan: Plan) -> bool:
        history = self.setup.hooks.history
        last = history(plan.target) if history else None
        return last is not None and (last["source_digest"], last["target_digest"]) == (plan.source_digest,
                                                                                       plan.target_digest)

    def stage(self, plans: Sequence[Plan]) -> None:
        auth = _auth(self.setup.source.credentials)
        for plan in plans:
            if plan.changed:
                self.pull(plan.source, auth)

    def tag(self, plans: Sequence[Plan]) -> None:
        for plan in plans:
            if plan.changed:
                self.say(f"docker tag {plan.source} {plan.target}")
                repo, target_tag = split(plan.target)
                if not self.api.tag(plan.source, repo, target_tag, force=True):
                    raise DockerEngineError(f"docker tag {plan.source} {plan.target} failed")

    def transfer(self, plans: Sequence[Plan]) -> list[CopyResult]:
        auth = _auth(self.setup.endpoint().login()) if any(p.changed for p in plans) else None
        results = []
        for plan in plans:
            result = plan.result()
            if plan.changed:
                digest, pushed, existing = self.push(plan.target, auth)
                result.target_digest, result.blobs_copied, result.blobs_skipped = digest, pushed, existing
                if not self.setup.spec.engine.keep_local_images:
                    self.remove([plan.target, plan.source])
            results.append(result)
        return results

    def close(self) -> None:
        if "copier" in self.__dict__:
            self.copier.close()

    # -- the daemon ---------------------------------------------------------------------------------
    def pull(self, reference: str, auth: dict | None) -> str:
        """Pull through the daemon; returns the digest the daemon reports for the reference."""
        repo, tag = split(reference)
        self.say(f"docker pull {reference}")
        events = self._events(lambda: self.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                              f"pull {reference}")
        for event in events:
            match = _DIGEST_RE.search(event.get("status", ""))
            if match and event["status"].startswith("Digest:"):
                return match.group(1)
        return ""

    def push(self, target: str, auth: dict | None) -> tuple[str, int, int]:
        """Push through the daemon: (digest the registry stored, layers pushed, layers already there)."""
        repo, target_tag = split(target)
        self.say(f"docker push {target}")
        events = self._events(lambda: self.api.push(repo, tag=target_tag, stream=True, decode=True,
                                                    auth_config=auth), f"push {target}")
        aux = [e["aux"] for e in events if isinstance(e.get("aux"), dict) and e["aux"].get("Digest")]
        if not aux:
            raise DockerEngineError(f"push {target}: the daemon reported no digest")
        statuses = [e.get("status", "") for e in events if e.get("id")]
        return (aux[-1]["Digest"], sum(s == "Pushed" for s in statuses),
                sum(s.startswith(("Layer already exists", "Mounted from")) for s in statuses))

    def remove(self, references: Iterable[str]) -> None:
        """Remove local tags so workers do not fill their disks; a missing image is fine."""
        for reference in references:
            try:
                self.api.remove_image(reference, force=True, noprune=False)
                self.say(f"removed local image {reference}")
            except docker.errors.NotFound:
                pass

    def _events(self, start: Callable[[], Iterable[dict[str, Any]]], what: str) -> list[dict]:
        """Read a pull or push stream to its end; raise with the registry's message on any error."""
        events = []
        try:
            for event in start():
                events.append(event)
                if "error" in event or "errorDetail" in event:
                    detail = event.get("errorDetail") or {}
                    raise stream_error(what, detail.get("message") or event.get("error") or "unknown error")
                self._progress(event)
        except docker.errors.APIError as exc:
            raise api_error(what, exc) from None
        return events

    def _progress(self, event: dict) -> None:
        status = event.get("status", "")
        if event.get("id") and status in ("Pull complete", "Already exists", "Pushed", "Layer already exists",
                                          "Mounted from"):
            self.say(f"  layer {event['id']}: {status.lower()}")
        elif status.startswith(("Digest:", "Status:")):
            self.say(f"  {status}")
