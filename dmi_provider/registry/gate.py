"""Verify before publish (`verify`): an image's blobs and manifests go to the target by digest, its
signatures and attestations with them; they are verified as the target holds them (no second download, no
source pull), and only then is the target tag written. An image that does not verify never gets the tag:
it fails (`RejectedImage`), or is tagged in the quarantine repository instead (`on-verify-failure`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dmi_provider.registry.client import RegistryClient
from dmi_provider.registry.errors import NotFound, RegistryError
from dmi_provider.registry.manifest import Descriptor, Manifest, unique_blobs
from dmi_provider.registry.referrers import fallback_tag
from dmi_provider.verify import Evidence, Verdict, VerifyPolicy, evidence_from, verify
from dmi_provider.verify.evidence import BUNDLE, DSSE, IN_TOTO, MAX_BLOB, EvidenceError

MAX_REFERRERS = 50  # signed referrers read per digest (each one GET at the target)


class RejectedImage(RegistryError):
    """An image whose signatures or attestations do not verify: not retryable (the same bytes fail again).
    `outcome`: "rejected", or "quarantined" when it was tagged in the quarantine repository."""

    def __init__(self, message: str, *, outcome: str = "rejected", quarantined_at: str | None = None):
        super().__init__(message, retryable=False)
        self.outcome, self.quarantined_at = outcome, quarantined_at
        self.side = "source"


@dataclass(frozen=True)
class Gate:
    """The copy's verification: the policy, and the quarantine repository (None: `on-verify-failure = fail`)."""

    policy: VerifyPolicy
    quarantine: str | None = None

    @property
    def active(self) -> bool:
        return self.policy.mode != "none"


def _raw_or_none(dc: RegistryClient, repo: str, ref: str) -> Manifest | None:
    try:
        return dc.get_manifest(repo, ref)
    except NotFound:
        return None


def _signed_type(artifact_type: str | None) -> bool:
    return bool(artifact_type) and (artifact_type in (DSSE, IN_TOTO) or str(artifact_type).startswith(BUNDLE))


def evidence_at(dc: RegistryClient, repo: str, digest: str) -> Evidence:
    """What the target holds about `digest`: cosign's `.sig` and `.att` tags and the signed OCI 1.1 referrers
    (through the referrers API, else the `sha256-<hex>` fallback index); blobs read from the target."""
    sig = _raw_or_none(dc, repo, fallback_tag(digest) + ".sig")
    att = _raw_or_none(dc, repo, fallback_tag(digest) + ".att")
    listed = dc.referrers(repo, digest)
    if listed is None:
        index = _raw_or_none(dc, repo, fallback_tag(digest))
        listed = list(index.children) if index is not None and index.is_index else []
    signed = [d for d in listed if _signed_type(d.artifact_type)][:MAX_REFERRERS]
    referrers = [dc.get_manifest(repo, d.digest).raw for d in signed]
    return evidence_from(sig.raw if sig else None, att.raw if att else None, referrers, _reader(dc, repo))


def _reader(dc: RegistryClient, repo: str) -> Callable[[str], bytes]:
    """Blobs from the target; one it refuses for good (too large, gone) is that evidence refused, not the
    copy failed: a source must not turn its own rejection into a failure that is never quarantined."""
    def read(digest: str) -> bytes:
        try:
            return dc.read_blob(repo, digest, MAX_BLOB)
        except RegistryError as exc:
            if exc.retryable:
                raise
            raise EvidenceError(f"blob {digest}: {exc}") from None
    return read


def judge(dc: RegistryClient, repo: str, digests: list[str], policy: VerifyPolicy) -> Verdict:
    """Every digest must verify (the index's, or each kept platform's when a platform filter wrote a new
    index); the first that does not gives the reason."""
    if not digests:  # fail closed: nothing to verify is nothing verified
        return Verdict(False, "no image digest to verify (the index lists no platform)")
    keys: list[str] = []
    checked = 0
    for digest in digests:
        try:
            verdict = verify(digest, evidence_at(dc, repo, digest), policy)
        except EvidenceError as exc:  # a digest that is not sha256: nothing signs it the way cosign does
            return Verdict(False, str(exc), None, checked)
        checked += verdict.checked
        if not verdict.ok:
            return Verdict(False, verdict.reason, None, checked)
        keys += [k for k in (verdict.verified_by or "").split(", ") if k and k not in keys]
    return Verdict(True, "verified", ", ".join(keys) or None, checked)


def subjects(top: Manifest, filtered: bool) -> list[str]:
    """What must verify: the digest written under the tag (an index's own, as `cosign sign image:tag` signs
    it); with a platform filter, DMI wrote a new index nobody signed, so each kept platform's digest."""
    if not filtered:
        return [top.digest]
    return [c.digest for c in top.children if c.platform != "unknown/unknown"]


def quarantine_parts(dc: RegistryClient, repo: str, top: Manifest, fetched: list[Manifest]
                     ) -> tuple[list[Manifest], list[Descriptor]]:
    """What the quarantine repository needs before `top`'s tag, taken from the target repository (mounted,
    nothing read from the source): an index's children (the plan's, else read at the target) and the blobs."""
    known = {m.digest: m for m in fetched}
    images = [top] if not top.is_index else [known.get(c.digest) or dc.get_manifest(repo, c.digest)
                                               for c in top.children]
    return (images if top.is_index else []), unique_blobs(images)


def withdraw(dc: RegistryClient, repo: str, written: list[Manifest], say: Callable[[str], None]) -> None:
    """What a rejected copy wrote by digest, deleted again (the top first), so that the mirror does not serve
    it to a pull by digest either; a registry that refuses deletion keeps it, untagged, and the log says so."""
    for manifest in reversed(written):
        try:
            dc.delete_manifest(repo, manifest.digest)
        except RegistryError as exc:
            say(f"{dc.registry}/{repo}: warning: the rejected {manifest.digest} stays reachable by digest (the "
                f"registry did not delete it: {exc})")
            return
