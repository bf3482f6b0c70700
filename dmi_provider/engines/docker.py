"""The docker engine: pull, tag and push through a Docker daemon with the docker SDK. No Airflow here.

docker-py does not raise on registry errors inside a pull or push stream: every event is read and an
event that carries `error` raises with the registry's own message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import docker

Say = Callable[[str], None]
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64})")


_PERMANENT = ("unauthorized", "denied", "authentication required", "not found", "manifest unknown", "name unknown",
              "invalid", "no basic auth credentials", "forbidden")


class DockerEngineError(RuntimeError):
    """A daemon or registry error; `retryable` is false for refusals that a retry cannot fix."""

    def __init__(self, message: str):
        super().__init__(message)
        lowered = message.lower()
        self.retryable = not any(word in lowered for word in _PERMANENT)


@dataclass
class PushOutcome:
    digest: str
    layers_pushed: int
    layers_existing: int
    size: int


def split(reference: str) -> tuple[str, str]:
    """`host/repo:tag` -> (`host/repo`, `tag`)."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon <= slash:
        return reference, "latest"
    return reference[:colon], reference[colon + 1 :]


def _events(start: Callable[[], Iterable[dict]], what: str, say: Say) -> list[dict]:
    """Read a pull or push stream to its end; raise with the registry's message on any error."""
    try:
        return _read(start(), what, say)
    except docker.errors.APIError as exc:
        raise DockerEngineError(f"{what}: {exc.explanation or exc}") from None


def _read(stream: Iterable[dict], what: str, say: Say) -> list[dict]:
    events = []
    for event in stream:
        events.append(event)
        if "error" in event or "errorDetail" in event:
            detail = event.get("errorDetail") or {}
            message = detail.get("message") or event.get("error") or "unknown error"
            raise DockerEngineError(f"{what}: {message}")
        status = event.get("status", "")
        if event.get("id") and status in ("Pull complete", "Already exists", "Pushed", "Layer already exists",
                                          "Mounted from"):
            say(f"  layer {event['id']}: {status.lower()}")
        elif status.startswith(("Digest:", "Status:")):
            say(f"  {status}")
    return events


def pull(api: docker.APIClient, reference: str, auth: dict | None, say: Say) -> str:
    """Pull through the daemon; returns the digest the daemon reports for the reference."""
    repo, tag = split(reference)
    say(f"docker pull {reference}")
    events = _events(lambda: api.pull(repo, tag=tag, stream=True, decode=True, auth_config=auth),
                     f"pull {reference}", say)
    for event in events:
        match = _DIGEST_RE.search(event.get("status", ""))
        if match and event["status"].startswith("Digest:"):
            return match.group(1)
    return ""


def tag(api: docker.APIClient, source: str, target: str) -> None:
    repo, target_tag = split(target)
    if not api.tag(source, repo, target_tag, force=True):
        raise DockerEngineError(f"docker tag {source} {target} failed")


def push(api: docker.APIClient, target: str, auth: dict | None, say: Say) -> PushOutcome:
    """Push through the daemon; returns the digest the registry stored (from the aux event)."""
    repo, target_tag = split(target)
    say(f"docker push {target}")
    events = _events(lambda: api.push(repo, tag=target_tag, stream=True, decode=True, auth_config=auth),
                     f"push {target}", say)
    aux = [e["aux"] for e in events if isinstance(e.get("aux"), dict) and e["aux"].get("Digest")]
    if not aux:
        raise DockerEngineError(f"push {target}: the daemon reported no digest")
    statuses = [e.get("status", "") for e in events if e.get("id")]
    return PushOutcome(aux[-1]["Digest"], sum(s == "Pushed" for s in statuses),
                       sum(s.startswith(("Layer already exists", "Mounted from")) for s in statuses),
                       int(aux[-1].get("Size") or 0))


def remove(api: docker.APIClient, references: Iterable[str], say: Say) -> None:
    """Remove local tags so workers do not fill their disks; a missing image is fine."""
    for reference in references:
        try:
            api.remove_image(reference, force=True, noprune=False)
            say(f"removed local image {reference}")
        except docker.errors.NotFound:
            pass
