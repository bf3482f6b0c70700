"""`dmi copy SRC DST`: one image, registry to registry, through the same pipeline as a config.ini section."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dmi_provider.cli.common import EXIT_BAD_INPUT, log_to_stderr, peak_rss_mib, stdout_to_stderr
from dmi_provider.errors import DmiError
from dmi_provider.hints import Words, hint
from dmi_provider.registry.auth import Credentials
from dmi_provider.spec import MirrorSpec, VerifySpec

if TYPE_CHECKING:
    from dmi_provider.registry.network import Network
    from dmi_provider.registry.reference import Reference

# What `dmi copy`'s hints name: its flags (dmi sync and dmi plan speak config.ini's keys: hints.CONFIG_WORDS).
COPY_WORDS = Words(login=("--src-creds", "--dst-creds"), ca_bundle=("--src-ca-bundle", "--dst-ca-bundle"),
                   ca_elsewhere=",", allow_plain_http="give it --insecure", forbid_plain_http="drop --insecure for it",
                   pin="update the pin", reserve="--pull-reserve", fewer_platforms="copy fewer --platform")


def _credentials(value: str | None, what: str) -> Credentials | None:
    if value is None:
        return None
    if ":" not in value:  # USER alone: the password comes from the environment, not the command line
        env = f"DMI_{what.upper()}_PASSWORD"
        if env not in os.environ:
            raise ValueError(f"--{what}-creds {value!r}: give USER:PASSWORD, or USER with the password in ${env}")
        return Credentials(value, os.environ[env])
    print(f"dmi copy: warning: a password given in --{what}-creds is visible to every user of this machine (ps) "
          f"and kept in shell history; give USER alone and the password in ${f'DMI_{what.upper()}_PASSWORD'}",
          file=sys.stderr)
    return Credentials.parse(value)


def _network(proxy: str | None, ca_bundle: str | None, flag: str) -> Network:
    """--src-proxy / --src-ca-bundle (or --dst-…) as a Network; a bad value is a ValueError naming the flag."""
    from dmi_provider.registry.network import Network, check_ca_bundle, check_proxy

    checked = {}
    for name, value, check in (("proxy", proxy, check_proxy), ("ca-bundle", ca_bundle, check_ca_bundle)):
        try:
            checked[name] = check(value) if value else None
        except ValueError as exc:
            raise ValueError(f"{flag}-{name}: {exc}") from None
    return Network(checked["proxy"], checked["ca-bundle"])


def _percent(text: str) -> float:
    from dmi_provider.spec import KEYS

    try:
        return float(KEYS["pull-reserve"].parse(text, Path()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ref_part(ref: Reference) -> str:
    """What follows the repository in a reference: `:tag`'s tag, `@digest`, or `tag@digest`."""
    return f"{ref.tag or ''}{f'@{ref.digest}' if ref.digest else ''}"


def _copy_spec(args: argparse.Namespace, src: Reference, dst: Reference, insecure: list[str]) -> MirrorSpec:
    """`dmi copy`'s flags as a section's spec: the same pipeline as a config.ini section."""
    from dmi_provider.registry.referrers import ReferrerFilter
    from dmi_provider.spec import BudgetSpec, EngineSpec, SelectionSpec, SourceSpec, TargetSpec, TransferSpec

    return MirrorSpec(
        section="dmi copy", verify=_verify_spec(args, dst),
        source=SourceSpec(registry=src.registry, repository=src.repository),
        target=TargetSpec(kind="registry", registry=dst.registry, repository=dst.repository),
        selection=SelectionSpec(platforms=tuple(args.platform),
                                referrers=ReferrerFilter(enabled=not args.no_referrers)),
        transfer=TransferSpec(insecure_registries=tuple(insecure)), budget=BudgetSpec(pull_reserve=args.pull_reserve),
        engine=EngineSpec(name=args.engine, docker_url=args.docker_url))


def _verify_spec(args: argparse.Namespace, dst: Reference) -> VerifySpec:
    """--verify-key and its friends as the section keys they stand for; a bad one is a ValueError."""
    from dmi_provider.config_verify import verify_annotations, verify_attestations, verify_keys
    from dmi_provider.registry.reference import check_path

    if not args.verify_key:
        if args.verify_attestation or args.verify_annotation or args.quarantine:
            raise ValueError("--verify-attestation, --verify-annotation and --quarantine need --verify-key")
        return VerifySpec()
    if not dst.tag:
        raise ValueError("--verify-key gates a tag: give DST a tag (a digest is published as soon as it is written)")
    if args.engine == "docker" or args.no_referrers:
        raise ValueError("--verify-key needs the registry engine and the signatures copied with the image: drop "
                         f"{'--engine docker' if args.engine == 'docker' else '--no-referrers'}")
    try:
        keys = verify_keys(" ".join(args.verify_key), Path.cwd())
        attestations = verify_attestations(" ".join(args.verify_attestation), Path.cwd())
        annotations = verify_annotations(",".join(args.verify_annotation), Path.cwd())
    except ValueError as exc:
        raise ValueError(f"--verify-key: {exc}") from None
    quarantine = check_path(args.quarantine.strip("/")) if args.quarantine else None
    if quarantine and quarantine == dst.repository:
        raise ValueError("--quarantine names the target repository: an image that does not verify would get the "
                         "very tag it is kept from")
    return VerifySpec("attestations" if attestations else "signature", keys, attestations, annotations,
                      "quarantine" if quarantine else "fail", quarantine)


def cmd_copy(args: argparse.Namespace) -> int:
    import logging

    from dmi_provider.hooks.connections import RegistryLogin
    from dmi_provider.pipeline import MirrorRun, Pushed, RunHooks, Tuning
    from dmi_provider.registry.budget import PullsShort
    from dmi_provider.registry.reference import InvalidReference, check_host, parse_reference
    from dmi_provider.targets.base import Endpoint, FixedTarget

    try:
        src, dst = parse_reference(args.src), parse_reference(args.dst)
        insecure = [check_host(h) for h in args.insecure]
        networks = {ref.registry: _network(proxy, ca, f"--{what}")
                    for ref, proxy, ca, what in ((src, args.src_proxy, args.src_ca_bundle, "src"),
                                                 (dst, args.dst_proxy, args.dst_ca_bundle, "dst"))}
        creds = {ref.registry: _credentials(value, what)
                 for ref, value, what in ((src, args.src_creds, "src"), (dst, args.dst_creds, "dst"))}
        spec = _copy_spec(args, src, dst, insecure)
    except (InvalidReference, ValueError, DmiError) as exc:
        print(f"dmi copy: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    log_to_stderr(logging.WARNING if args.quiet else logging.INFO)
    run = MirrorRun(spec, [(_ref_part(src), _ref_part(dst))],
                    RunHooks(say=logging.getLogger("dmi_provider.copy").info, max_pause=30.0),
                    target=FixedTarget(Endpoint(dst.registry, creds.get(dst.registry), networks[dst.registry])),
                    source=RegistryLogin(creds.get(src.registry), networks[src.registry]),
                    tuning=Tuning(workers=args.jobs, blob_cache=not args.no_cache, use_docker_config=True))
    pushed = Pushed()
    try:
        with stdout_to_stderr():  # the docker engine imports Airflow, whose logs go to stdout
            pulled = run.run_all(force=args.force, dry_run=args.dry_run, pushed=pushed)
    except DmiError as exc:
        later = f": try again in {exc.wait:.0f}s, or lower it" if isinstance(exc, PullsShort) else ""
        print(f"dmi copy: failed: {exc}{hint(exc, COPY_WORDS)}{later}", file=sys.stderr)
        return 1
    finally:
        run.close()
    result = pulled.plans[0].result(dry_run=True) if args.dry_run else pushed.copies[0]
    peak = peak_rss_mib()
    if args.json:
        print(json.dumps(result.to_dict() | {"peak_rss_mib": peak}, indent=2))
    else:
        requests = ", ".join(f"{k}: {sum(v.values())}" for k, v in result.requests.items())
        limit = (f"; rate limit {result.ratelimit_remaining}/{result.ratelimit_limit} left"
                 if result.ratelimit_limit is not None else "")
        print(f"{result.status}: {result.source} -> {result.target} {result.target_digest or result.source_digest}"
              f"{' (platform-filtered index)' if result.filtered else ''}\n"
              f"  blobs: {result.blobs_copied} copied ({result.bytes_transferred} bytes), {result.blobs_mounted} "
              f"mounted, {result.blobs_skipped} skipped; manifests written: {result.manifests_copied}; "
              f"referrers copied: {result.referrers_copied}; "
              f"requests {requests}{limit}; {result.duration:.2f}s; peak memory {peak} MiB")
    return 0


def copy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copy", help="copy one image registry to registry, without a Docker daemon")
    p.add_argument("src", metavar="SRC", help="source reference, e.g. istio/proxyv2:1.7.0")
    p.add_argument("dst", metavar="DST", help="target reference, e.g. registry.example.com/istio/proxyv2:1.7.0")
    p.add_argument("--platform", action="append", default=[], metavar="OS/ARCH[/VARIANT]",
                   help="copy only this platform of a multi-arch image (repeatable); writes a new index")
    p.add_argument("--insecure", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow plain HTTP to this registry (repeatable)")
    p.add_argument("--src-creds", metavar="USER[:PASSWORD]",
                   help="source credentials (default: docker config.json; USER alone reads $DMI_SRC_PASSWORD)")
    p.add_argument("--dst-creds", metavar="USER[:PASSWORD]",
                   help="target credentials (default: docker config.json; USER alone reads $DMI_DST_PASSWORD)")
    for side, what in (("src", "source"), ("dst", "target")):
        p.add_argument(f"--{side}-proxy", metavar="URL", help=f"proxy for the {what} registry (default: HTTPS_PROXY, "
                       "HTTP_PROXY and NO_PROXY of the environment)")
        p.add_argument(f"--{side}-ca-bundle", metavar="PEM", help=f"CA certificate(s) to trust for the {what} "
                       "registry besides the system's (TLS stays verified)")
    p.add_argument("--dry-run", action="store_true", help="compare digests with HEADs only; write nothing")
    p.add_argument("--force", action="store_true", help="copy even when the target holds the source digest")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the blob location cache (mount hints across runs)")
    p.add_argument("--jobs", type=int, default=4, help="blobs transferred at once (default 4)")
    p.add_argument("--no-referrers", action="store_true",
                   help="copy the image alone: no signatures, SBOMs or attestations (by default they come along)")
    p.add_argument("--pull-reserve", type=_percent, default=10.0, metavar="PCT",
                   help="share of the source's pull limit (Docker Hub) never spent (default 10%%)")
    p.add_argument("--engine", choices=("registry", "docker"), default="registry",
                   help="registry (default): no daemon; docker: pull, tag and push through a Docker daemon")
    p.add_argument("--docker-url", help="the daemon for --engine docker (default $DOCKER_HOST, else the local "
                   "socket)")
    p.add_argument("--verify-key", action="append", default=[], metavar="PEM",
                   help="tag the target only if a cosign signature by this public key (repeatable: any one counts) "
                   "verifies; else fail, the target tag untouched (see \"Verify before publish\")")
    p.add_argument("--verify-attestation", action="append", default=[], metavar="TYPE",
                   help="with --verify-key: an in-toto attestation of this predicate type (slsa, spdx, cyclonedx, "
                   "vuln or a URI) signed by one of the keys must be there too (repeatable)")
    p.add_argument("--verify-annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="with --verify-key: a claim the signature must carry (cosign sign -a; repeatable)")
    p.add_argument("--quarantine", metavar="REPOSITORY", help="with --verify-key: tag an image that does not "
                   "verify in this repository of the target registry instead (still exits 1)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_copy)
