"""One section being read, and the rules between its keys (what a single key's parser cannot see).
Plain Python: no Airflow import here."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from dmi_provider.config_issues import Reader
from dmi_provider.config_keys import EXTRAS, TARGETS, Refresh
from dmi_provider.registry.reference import InvalidReference, check_path
from dmi_provider.spec import FILTER_KEYS, KEY_TABLE


class Section:
    """One section being read: the raw values it sees (its own over [DEFAULT]'s) and the parsed ones."""

    def __init__(self, reader: Reader, name: str, own: dict[str, str], defaults: dict[str, str]):
        self.reader, self.name, self.own = reader, name, own
        inherited = dict(defaults)
        if "tag" in own or "tags" in own:  # a section's own tag/tags replace [DEFAULT]'s, both keys
            inherited.pop("tag", None)
            inherited.pop("tags", None)
        self.raw = {**inherited, **own}
        self.values: dict[str, object] = {}
        self.start = len(reader.issues)

    def bad(self, key: str | None, message: str) -> None:
        self.reader.add(self.name, key, self.raw.get(key) if key else None, message)

    def given(self, key: str) -> bool:
        return bool((self.raw.get(key) or "").strip())

    def walk(self, base_dir: Path, default_refresh: Refresh | None) -> None:
        """Parse every key of the table that is set; unset keys take the table's value."""
        for key in KEY_TABLE:
            text = (self.raw.get(key.name) or "").strip()
            if key.name == "refresh" and "refresh" not in self.own:
                self.values["refresh"] = default_refresh  # [DEFAULT]'s was checked (and reported) once
            elif not text:
                self.values[key.name] = key.value
            else:
                try:
                    self.values[key.name] = key.parse(text, base_dir)
                except ValueError as exc:
                    self.bad(key.name, str(exc))
                    self.values[key.name] = key.value

    def get(self, key: str) -> Any:
        return self.values.get(key)




def tags_of(sec: Section) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys([*sec.get("tag"), *sec.get("tags")]))
    if not tags and not any(sec.given(k) for k in FILTER_KEYS) and not any(
            i.key in ("tag", "tags") for i in sec.reader.issues[sec.start:]):
        key = "tags" if "tags" in sec.raw and "tag" not in sec.raw else "tag"
        sec.reader.add(sec.name, key, sec.raw.get(key), "missing: set tag (or tags) to the tag(s) to mirror, or a "
                                                        "tags-* filter")
    if len(tags) > sec.get("tags-max"):
        sec.bad("tags" if sec.get("tags") else "tag", f"names {len(tags)} tags, more than tags-max = "
                f"{sec.get('tags-max')}: split the section or raise tags-max (at most 1000)")
    return tags


def target_rules(sec: Section, tags: tuple[str, ...]) -> str | None:
    """Rules between keys; returns the target repository."""
    target = sec.get("target")
    if target == "registry" and not sec.get("target-registry") and not sec.given("target-registry"):
        sec.reader.add(sec.name, "target-registry", None,
                       "missing: target = registry needs target-registry (host[:port])")
    for key in KEY_TABLE:
        if key.targets and key.name in sec.own and target in TARGETS and target not in key.targets:
            sec.bad(key.name, f"applies only to target = {' or '.join(key.targets)}")
    if sec.get("target-tag") and len(tags) > 1:
        sec.bad("target-tag", f"needs exactly one source tag, this section mirrors {len(tags)}: {', '.join(tags)}")
    elif sec.get("target-tag") and any(sec.get(k) for k in FILTER_KEYS):
        sec.bad("target-tag", "cannot rename tags chosen by tags-* filters: remove target-tag or the filters")
    for name in ("tag", "tags"):
        if any(t.startswith("@") for t in sec.get(name) or ()) and not sec.get("target-tag"):
            sec.bad(name, "a digest without a tag (@sha256:…) needs target-tag: the tag to write at the target")
    if sec.get("engine") == "docker" and sec.get("platforms"):
        sec.bad("platforms", "engine = docker mirrors the daemon's own platform only: remove platforms, or use "
                             "engine = registry")
    for name in ("source-proxy", "target-proxy", "source-ca-bundle", "target-ca-bundle"):
        if sec.get("engine") == "docker" and name in sec.own:  # from [DEFAULT] it serves the other sections
            sec.bad(name, "engine = docker reaches registries through the daemon, which has its own proxy and CA "
                         "settings (dockerd's HTTPS_PROXY, /etc/docker/certs.d): remove it, or use engine = registry")
    if sec.get("docker-queue") and sec.get("engine") != "docker" and "docker-queue" in sec.own:
        sec.bad("docker-queue", "applies only to engine = docker (the registry engine's tasks run on any worker)")
    if sec.get("kms-key") and sec.get("encryption") != "KMS":
        sec.bad("kms-key", "needs encryption = KMS")
    _cloud_rules(sec)
    if sec.given("target-repository"):
        return sec.get("target-repository")
    project, image = (sec.raw.get("project") or "").strip(), (sec.raw.get("image") or "").strip()
    if not project:
        sec.reader.add(sec.name, "project", None, "missing: set project (the target repository is project/image)")
    elif image and path_ok(image):
        try:
            return check_path(f"{project.strip('/')}/{image.strip('/')}")
        except InvalidReference as exc:
            sec.bad("project", str(exc))
    return None


def verify_rules(sec: Section) -> None:
    """What `verify` needs: keys, the registry engine, the signatures travelling with the image."""
    mode = sec.get("verify")
    if mode == "none":
        for name in ("verify-keys", "verify-attestations", "verify-annotations", "on-verify-failure",
                     "quarantine-repository"):
            if name in sec.own:
                sec.bad(name, "applies only with verify = signature or attestations")
        return
    if not sec.get("verify-keys") and not any(i.key == "verify-keys" for i in sec.reader.issues[sec.start:]):
        sec.reader.add(sec.name, "verify-keys", None, f"missing: verify = {mode} needs verify-keys (the public "
                                                      "keys whose signatures count, e.g. cosign.pub)")
    if sec.get("engine") == "docker":
        sec.bad("verify", "needs engine = registry: a Docker daemon writes the tag as it pushes, before anything "
                          "could be verified")
    if not sec.get("referrers"):
        sec.bad("verify", "needs referrers = true: the signatures travel with the image and are verified at the "
                          "target")
    kinds = ["signature"] + (["attestation"] if mode == "attestations" else [])
    only, left = sec.get("referrers-include"), sec.get("referrers-exclude")
    for kind in kinds:
        if (only and kind not in only) or kind in left:
            sec.bad("referrers-exclude" if kind in left else "referrers-include",
                    f"verify = {mode} needs the {kind}s to travel: let {kind} through")
    if sec.get("verify-attestations") and mode != "attestations":
        sec.bad("verify-attestations", "applies only with verify = attestations")
    if "quarantine-repository" in sec.own and sec.get("on-verify-failure") != "quarantine":
        sec.bad("quarantine-repository", "applies only with on-verify-failure = quarantine")
    quarantine = (sec.get("quarantine-repository") or "").strip("/")
    if quarantine and quarantine in (sec.get("target-repository"), _project_image(sec)):
        sec.bad("quarantine-repository", "is the target repository: an image that does not verify would get the "
                                         "very tag it is kept from; name another repository")


def _project_image(sec: Section) -> str:
    project, image = (sec.raw.get("project") or "").strip("/ "), (sec.raw.get("image") or "").strip("/ ")
    return f"{project}/{image}" if project and image else ""


SOURCE_HOSTS = {"ecr": "the ECR host, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "gar": "the GAR host, e.g. europe-west3-docker.pkg.dev", "acr": "the ACR host, e.g. NAME.azurecr.io"}


def _cloud_rules(sec: Section) -> None:
    """A cloud source names its host; a cloud needs its extra installed (the pip line says which)."""
    source, target = sec.get("source"), sec.get("target")
    if source in SOURCE_HOSTS and not sec.given("source-registry"):
        sec.reader.add(sec.name, "source-registry", None, f"missing: source = {source} needs source-registry: "
                                                          f"{SOURCE_HOSTS[source]}")
    for key, kind in (("target", target), ("source", source)):
        missing = [extra for module, extra in EXTRAS.get(str(kind), ()) if not _installed(module)]
        if missing:
            sec.bad(key, f"{key} = {kind} needs the {missing[0]} extra: pip install "
                         f"'airflow-provider-dmi[{missing[0]}]'")
            return


@functools.cache
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def path_ok(path: str) -> bool:
    try:
        check_path(path)
    except InvalidReference:
        return False
    return True
