"""The decision: is the digest signed (and attested) by a trusted key, and if not, the one line that says
why. Plain Python: no Airflow import here.

Each signature or attestation found is judged on its own (`judge`): signed by a trusted key, then readable
content, then naming this digest, then the required annotations. When none passes, the reason given is the
failure that got furthest, so a signature by the right key over another digest is reported before an
unrelated signature by someone else.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519

from dmi_provider.errors import DmiError
from dmi_provider.verify.evidence import DIGEST, KEYLESS, Claim, Evidence, EvidenceError, Item, Refusal, collect
from dmi_provider.verify.keys import TrustedKey, named_by, signed_by

MODES = ("none", "signature", "attestations")
# Short names for `cosign attest --type`'s predicate types; the first of each is the one messages name.
PREDICATES = {
    "slsa": ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"),
    "spdx": ("https://spdx.dev/Document",),
    "cyclonedx": ("https://cyclonedx.org/bom",),
    "vuln": ("https://cosign.sigstore.dev/attestation/vuln/v1",),
}
# How close a failed signature came to passing: the highest rank is the reason given.
OTHER_KEY, KEYLESS_RANK, REFUSED, TAMPERED, CONTENT, OTHER_DIGEST, ANNOTATION, ACCEPTED = range(1, 9)
FOUND = {noun: (f"1 {noun} found", f"{{n}} {noun}s found, none acceptable") for noun in ("signature", "attestation")}
NEAR = ("1 of that type not accepted", "{n} of that type not accepted")
ED25519PH = "an Ed25519ph signature (current cosign's default for ed25519 keys) cannot be checked yet"


class PolicyError(DmiError):
    """A verification policy that cannot be applied (an unknown mode or attestation name, no keys)."""

    retryable = False


def predicate_types(name: str) -> tuple[str, ...]:
    """The predicate types a required attestation accepts: a short name's, or the URI as given."""
    if name in PREDICATES:
        return PREDICATES[name]
    if "://" in name:
        return (name,)
    raise PolicyError(f"attestation {name!r}: neither a short name ({', '.join(PREDICATES)}) nor a predicate "
                      "type URI")


@dataclass(frozen=True)
class VerifyPolicy:
    """What an image must carry. `annotations` are `key=value` claims required in the signature's payload
    (cosign `sign -a`: the simple-signing `optional`, or the subject's annotations of a new-bundle-format
    signature); attestations carry none of their own, so they are checked on signatures only."""

    mode: str = "none"
    keys: tuple[TrustedKey, ...] = ()
    attestations: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PolicyError(f"verify mode {self.mode!r}: expected none, signature or attestations")
        if self.mode != "none" and not self.keys:
            raise PolicyError(f"verify = {self.mode} needs at least one trusted public key (verify-keys)")
        if self.attestations and self.mode != "attestations":
            raise PolicyError(f"required attestations ({', '.join(self.attestations)}) are checked only with "
                              f"verify = attestations, not {self.mode}")
        for name in self.attestations:
            predicate_types(name)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # one line
    verified_by: str | None = None  # the fingerprints of the keys that made the accepted evidence, comma-separated
    checked: int = 0  # signatures and attestations examined


@dataclass(frozen=True)
class Outcome:
    item: Item
    key: TrustedKey | None  # the trusted key that made the signature, when one did
    failure: str | None  # None: accepted
    rank: int


def verify(digest: str, evidence: Evidence, policy: VerifyPolicy) -> Verdict:
    """Whether `evidence` shows `digest` signed (and, in mode attestations, attested) as `policy` requires."""
    if policy.mode == "none":
        return Verdict(True, "not verified (verify = none)")
    if not DIGEST.fullmatch(digest):
        raise EvidenceError(f"verify: {digest!r} is not a sha256 digest (sha256:<64 lowercase hex>)")
    wanted = ("signature", "either") if policy.mode == "signature" else ("signature", "attestation", "either")
    outcomes = [judge(item, digest, policy) for item in collect(digest, evidence) if item.role in wanted]
    signatures = [o for o in outcomes if o.item.role in ("signature", "either")]
    good = [o for o in signatures if o.failure is None]
    if not good:
        return Verdict(False, _no_signature(digest, signatures, policy), checked=len(signatures))
    if policy.mode == "signature":
        return Verdict(True, f"signature verified: {_accepted(good)}", _fingerprints(good), len(signatures))
    attestations = [o for o in outcomes if o.item.role in ("attestation", "either")]
    used, failure = _attested(digest, attestations, policy)
    if failure:
        return Verdict(False, failure, checked=len(outcomes))
    types = ", ".join(dict.fromkeys(str(o.item.predicate_type) for o in used))
    return Verdict(True, f"signature verified: {_accepted(good)}; attestations verified: {types}",
                   _fingerprints(good + used), len(outcomes))


def judge(item: Item, digest: str, policy: VerifyPolicy) -> Outcome:
    """One signature or attestation against the keys, the digest and the required annotations."""
    if isinstance(item, Refusal):
        return Outcome(item, None, item.text, KEYLESS_RANK if item.keyless else REFUSED)
    key = next((k for sig in item.signatures if (k := signed_by(policy.keys, sig, item.message))), None)
    if key is None:
        return _not_signed(item, policy.keys)
    if item.problem or item.statement is None:
        return Outcome(item, key, f"signed, but {item.problem or 'its content is unreadable'}", CONTENT)
    names = item.statement.names
    if digest not in names:
        listed = ", ".join(list(names)[:3]) + (", …" if len(names) > 3 else "")
        return Outcome(item, key, f"the {item.role} names {listed}, not {digest}", OTHER_DIGEST)
    if item.role == "signature":
        missing = _missing_annotation(names[digest], policy.annotations)
        if missing:
            return Outcome(item, key, missing, ANNOTATION)
    return Outcome(item, key, None, ACCEPTED)


def _not_signed(item: Claim, keys: tuple[TrustedKey, ...]) -> Outcome:
    """No trusted key verifies: say whose it is, as far as the unsigned hints tell."""
    if item.keyless:
        return Outcome(item, None, f"{KEYLESS} (a certificate, not a key)", KEYLESS_RANK)
    named = named_by(keys, item.hint)
    if named is not None:
        ph = f"; or {ED25519PH}" if isinstance(named.public_key, ed25519.Ed25519PublicKey) else ""
        return Outcome(item, None, f"payload tampered: signature does not match (it names {named.short}, one of "
                                   f"verify-keys){ph}", TAMPERED)
    ph = f"; or {ED25519PH}" if any(isinstance(k.public_key, ed25519.Ed25519PublicKey) for k in keys) else ""
    if item.hint:
        return Outcome(item, None, f"signed by another key ({_hint_text(item.hint)}){ph}", OTHER_KEY)
    return Outcome(item, None, f"signed by another key, or changed after signing{ph}", OTHER_KEY)


def _hint_text(hint: str) -> str:
    """A key hint as a fingerprint when it is one (a bundle's is base64 of the SHA-256), else as given."""
    if hint.startswith("SHA256:"):
        return hint[:19] + "…"
    try:
        raw = base64.b64decode(hint, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return f"SHA256:{raw.hex()[:12]}…" if len(raw) == 32 else f"key id {hint[:40]!r}"


def _missing_annotation(has: dict[str, str], wanted: dict[str, str]) -> str | None:
    for name, value in wanted.items():
        if has.get(name) != value:
            found = ", ".join(f"{k}={v}" for k, v in sorted(has.items())) or "none"
            found = found if len(found) <= 200 else found[:200] + "…"
            return f"annotation {name}={value} missing from the signature (it has: {found})"
    return None


def _closest(outcomes: list[Outcome], one: str, many: str, sep: str = ", ") -> str:
    """How many failed and the furthest-got failure (the first of equals: evidence order)."""
    best = max(outcomes, key=lambda o: o.rank)
    at = f"{best.item.where}{_by(best)}"
    if len(outcomes) == 1:
        return f"{one} ({at}){sep}{best.failure}"
    return f"{many.format(n=len(outcomes))}; the closest ({at}): {best.failure}"


def _by(outcome: Outcome) -> str:
    return f", by {outcome.key.short}" if outcome.key else ""


def _keys_text(keys: tuple[TrustedKey, ...]) -> str:
    return ", ".join(k.short for k in keys[:5]) + (f", and {len(keys) - 5} more" if len(keys) > 5 else "")


def _no_signature(digest: str, outcomes: list[Outcome], policy: VerifyPolicy) -> str:
    if not outcomes:
        return f"no signature for {digest}: none found (no cosign .sig, no signature referrer)"
    if any(o.key for o in outcomes):
        return f"no acceptable signature for {digest}: {_closest(outcomes, *FOUND['signature'])}"
    return (f"no signature by any of verify-keys ({_keys_text(policy.keys)}) for {digest}: "
            f"{_closest(outcomes, *FOUND['signature'])}")


def _attested(digest: str, outcomes: list[Outcome], policy: VerifyPolicy) -> tuple[list[Outcome], str | None]:
    """The accepted attestations the policy needs, or why they are not there."""
    good = [o for o in outcomes if o.failure is None and o.item.role == "attestation"]
    if not policy.attestations:
        if good:
            return good, None
        if not outcomes:
            return [], f"no attestation for {digest}: none found (no cosign .att, no attestation referrer)"
        return [], (f"no attestation by any of verify-keys ({_keys_text(policy.keys)}) for {digest}: "
                    f"{_closest(outcomes, *FOUND['attestation'])}")
    used: list[Outcome] = []
    found = ", ".join(dict.fromkeys(str(o.item.predicate_type) for o in good)) or "none"
    for name in policy.attestations:
        accepted = predicate_types(name)
        matching = [o for o in good if o.item.predicate_type in accepted]
        if not matching:
            text = f"attestation {accepted[0]} missing (found: {found})"
            near = [o for o in outcomes if o.failure and o.item.predicate_type in accepted]
            return [], text + (f"; {_closest(near, *NEAR, sep=': ')}" if near else "")
        used += [o for o in matching if o not in used]
    return used, None


def _accepted(good: list[Outcome]) -> str:
    first = good[0]
    more = f" (and {len(good) - 1} more)" if len(good) > 1 else ""
    return f"{first.item.where} by {first.key.short if first.key else '?'}{more}"


def _fingerprints(outcomes: list[Outcome]) -> str:
    return ", ".join(dict.fromkeys(o.key.fingerprint for o in outcomes if o.key))
