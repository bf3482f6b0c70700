"""The registry API of one host (OCI Distribution: manifests, tags, referrers, blobs, uploads) on top of
its transport (transport.py: auth, the one retry loop, redirects, rate limits, typed errors).
Every request is counted by kind ("HEAD manifest", "GET blob", ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import urljoin, urlsplit

import httpx

from dmi_provider.registry import hostmemo
from dmi_provider.registry.auth import Credentials
from dmi_provider.registry.errors import DigestMismatch, ManifestInvalid, ManifestTooLarge, NotFound, RegistryError
from dmi_provider.registry.manifest import MANIFEST_TYPES, Descriptor, Manifest
from dmi_provider.registry.ratelimit import RateLimit
from dmi_provider.registry.reference import TAG_RE
from dmi_provider.registry.settings import HostSettings, RetryPolicy, Uploads
from dmi_provider.registry.transport import Call, Transport
from dmi_provider.registry.wire import body_chunks, loads, origin, read_capped, shown_url

# Names other modules import from here.
__all__ = ["Call", "HostSettings", "RateLimit", "RegistryClient", "RetryPolicy", "Uploads", "body_chunks",
           "pull_scope", "push_scope"]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit
MAX_TAGS_BODY = 4 * 1024 * 1024  # one page of a tag list
MAX_TAG_PAGES = 200
MAX_LISTED_TAGS = 100_000  # distinct tags of one repository DMI will hold (filters read whole listings)
VERIFIABLE = ("sha256", "sha512")  # digest algorithms whose bytes this client can check
REFERRERS_API: dict[str, bool] = {}  # per registry URL: whether it has the referrers API (learnt once)
TAG_LIST_PAGE = 1000  # known_tags: one page or none


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _algorithm(digest: str, where: str) -> str:
    algorithm = digest.partition(":")[0]
    if algorithm not in VERIFIABLE:
        raise ManifestInvalid(f"{where}: cannot verify a {algorithm!r} digest (only {', '.join(VERIFIABLE)})")
    return algorithm


class RegistryClient:
    """The registry API of one host. Thread-safe: copies share one client per host."""

    def __init__(self, registry: str, settings: HostSettings | None = None, *, http: httpx.Client | None = None):
        self.registry = registry
        self.settings = settings or HostSettings()
        self.transport = Transport(registry, self.settings, http)
        self.base_url, self.network, self.retry = self.transport.base_url, self.settings.network, self.settings.retry
        self.uploads = self.settings.uploads
        self.counts: Counter[str] = self.transport.counts
        self.transfers = self.transport.transfers  # what copies sharing this host hold while moving a blob
        self.pulls = 0  # manifest GETs answered 200: what Docker Hub counts as pulls
        self._lock = threading.Lock()

    @property
    def credentials(self) -> Credentials | None:
        return self.transport.auth.credentials

    @property
    def ratelimit(self) -> RateLimit | None:
        """The source's pull budget as its latest manifest answer said."""
        return self.transport.ratelimit

    def url(self, path: str) -> str:
        return self.transport.url(path)

    def send(self, call: Call) -> httpx.Response:
        return self.transport.send(call)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the distribution API -----------------------------------------------------------------
    def check(self, scope: str) -> str:
        """GET /v2/ logged in with a token for `scope`: proves the registry answers and takes the login.
        Returns what was proven."""
        self.send(Call("GET", "/v2/", scope))
        challenge = self.transport.auth.challenge
        who = self.transport.auth.who()
        if challenge is None:
            return "it asks for no login"
        if challenge.scheme == "basic":
            return f"logged in {who} (basic auth)"
        return f"logged in {who}: {challenge.realm} gave a token for {scope}"

    def check_push(self, repo: str) -> None:
        """Open an upload and cancel it: proves the login may push to `repo`, writing nothing."""
        r = self.send(Call("POST", f"/v2/{repo}/blobs/uploads/", push_scope(repo), ok=(202,)))
        if r.headers.get("location"):
            self.cancel_upload(repo, urljoin(self.base_url + "/", r.headers["location"]))

    def head_manifest(self, repo: str, ref: str) -> Descriptor | None:
        try:
            r = self.send(Call("HEAD", f"/v2/{repo}/manifests/{ref}", pull_scope(repo),
                               headers={"Accept": MANIFEST_TYPES}))
        except NotFound:
            return None
        digest = r.headers.get("docker-content-digest")
        if not digest:
            return None  # some registries omit it on HEAD: callers then GET
        return Descriptor(r.headers.get("content-type", "").split(";")[0].strip(), digest,
                          int(r.headers.get("content-length") or 0))

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """GET a manifest; bytes kept exactly, checked against the digest asked for or announced."""
        url = f"/v2/{repo}/manifests/{ref}"
        if ":" in ref:
            _algorithm(ref, self.url(url))  # refuse what cannot be checked before asking
        r = self.send(Call("GET", url, pull_scope(repo), headers={"Accept": MANIFEST_TYPES}, stream=True))
        try:
            declared = int(r.headers.get("content-length") or 0)
            if declared > MAX_MANIFEST_BYTES:
                raise ManifestTooLarge(f"{self.url(url)}: manifest of {declared} bytes is over the "
                                       f"{MAX_MANIFEST_BYTES} byte limit")
            body = bytearray()
            for chunk in body_chunks(r):
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise ManifestTooLarge(f"{self.url(url)}: manifest over the {MAX_MANIFEST_BYTES} byte limit")
        finally:
            r.close()
        raw = bytes(body)
        with self._lock:
            self.pulls += 1
        expected = ref if ":" in ref else r.headers.get("docker-content-digest")
        if expected:
            algorithm = _algorithm(expected, self.url(url))
            actual = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
            if actual != expected:
                raise DigestMismatch(f"{self.url(url)}: manifest bytes hash to {actual}, expected {expected}",
                                     url=self.url(url))
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        return Manifest.parse(raw, media_type, "sha256:" + hashlib.sha256(raw).hexdigest())

    def list_tags(self, repo: str, page: int = 500) -> list[str]:
        """Every tag of a repository, following the registry's `Link: <…>; rel="next"` pages (`n`/`last`) on
        its own origin. Kept while reading: names a tag can have, each once, at most MAX_LISTED_TAGS (a
        hostile listing must not fill a worker's memory). Not a pull in Docker Hub's accounting."""
        url, tags = f"/v2/{repo}/tags/list?n={page}", dict[str, None]()
        for _ in range(MAX_TAG_PAGES):
            r = self.send(Call("GET", url, pull_scope(repo), stream=True))
            body = read_capped(r, MAX_TAGS_BODY + 1)
            if len(body) > MAX_TAGS_BODY:
                raise RegistryError(f"{self.url(url)}: a tag list page over {MAX_TAGS_BODY} bytes")
            try:
                found = loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{self.url(url)}: the tag list is not JSON") from None
            if not isinstance(found, list):
                raise RegistryError(f"{self.url(url)}: the tag list's `tags` is not a list")
            tags.update((t, None) for t in found if isinstance(t, str) and TAG_RE.fullmatch(t))
            del body, found
            if len(tags) > MAX_LISTED_TAGS:
                raise RegistryError(f"{self.registry}/{repo}: more than {MAX_LISTED_TAGS} tags; mirror it by tag "
                                    "(`tag = a b c`) rather than by a filter over its whole listing")
            following = self._next_page(r, url)
            if not following:
                return list(tags)
            url = following
        raise RegistryError(f"{self.registry}/{repo}: more than {MAX_TAG_PAGES} pages of tags")

    def _next_page(self, r: httpx.Response, url: str) -> str | None:
        """The `Link: rel="next"` page, which must be on the registry's own origin (scheme, host, port)."""
        following = r.links.get("next", {}).get("url")
        if not following:
            return None
        page = urljoin(self.base_url + "/", following)
        if origin(urlsplit(page)) != origin(urlsplit(self.base_url)) or \
                urlsplit(page).scheme != urlsplit(self.base_url).scheme:
            raise RegistryError(f"{self.url(url)}: the next page is on {shown_url(page)}, not on {self.registry}: "
                                "refused (pages stay on the registry's origin)")
        return page

    def known_tags(self, repo: str) -> frozenset[str] | None:
        """A repository's tags from one listing; None where that takes more than one page or the registry
        refuses it (then ask by HEAD). Not a pull."""
        try:
            r = self.send(Call("GET", f"/v2/{repo}/tags/list?n={TAG_LIST_PAGE}", pull_scope(repo), stream=True))
            body = read_capped(r, MAX_TAGS_BODY + 1)
            tags = (loads(body).get("tags") or []) if len(body) <= MAX_TAGS_BODY else None
        except (RegistryError, ValueError, AttributeError):
            return None
        # More pages, or a page of a size a registry caps at (some drop the Link header): ask by HEAD instead.
        if not isinstance(tags, list) or r.links.get("next") or len(tags) in (50, 100, 250, 500, TAG_LIST_PAGE):
            return None
        return frozenset(t for t in tags if isinstance(t, str))

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        return self.put_manifest_answer(repo, ref, manifest)[0]

    def put_manifest_answer(self, repo: str, ref: str, manifest: Manifest) -> tuple[str, bool]:
        """(digest stored, whether the registry indexed the manifest's subject itself: `OCI-Subject`)."""
        r = self.send(Call("PUT", f"/v2/{repo}/manifests/{ref}", push_scope(repo), content=manifest.raw,
                           headers={"Content-Type": manifest.media_type}, ok=(200, 201)))
        digest = r.headers.get("docker-content-digest", manifest.digest)
        if digest != manifest.digest:
            raise DigestMismatch(f"{self.registry}/{repo}:{ref}: registry stored {digest}, sent {manifest.digest}")
        return digest, bool(r.headers.get("oci-subject"))

    def referrers(self, repo: str, digest: str) -> list[Descriptor] | None:
        """The OCI 1.1 referrers of a digest, or None where the registry has no referrers API (it answers
        404 there: a registry that has it never does). Follows `Link` pages. Not a pull."""
        if self.base_url not in REFERRERS_API and hostmemo.recall(self.base_url, "referrers_api") is False:
            REFERRERS_API[self.base_url] = False  # learnt by an earlier process on this machine today
        if REFERRERS_API.get(self.base_url) is False:
            return None  # this registry said so once in this process: no need to ask for every digest
        url, found = f"/v2/{repo}/referrers/{digest}", list[Descriptor]()
        for _ in range(MAX_TAG_PAGES):
            try:
                r = self.send(Call("GET", url, pull_scope(repo), stream=True,
                                   headers={"Accept": "application/vnd.oci.image.index.v1+json"}))
            except NotFound:
                REFERRERS_API[self.base_url] = False
                hostmemo.remember(self.base_url, "referrers_api", False)
                return None
            REFERRERS_API[self.base_url] = True
            body = read_capped(r, MAX_MANIFEST_BYTES + 1)
            if len(body) > MAX_MANIFEST_BYTES:
                raise ManifestTooLarge(f"{self.url(url)}: a referrers page over {MAX_MANIFEST_BYTES} bytes")
            found += Manifest.parse(body, "application/vnd.oci.image.index.v1+json").children
            following = self._next_page(r, url)
            if not following:
                return found
            url = following
        raise RegistryError(f"{self.registry}/{repo}: more than {MAX_TAG_PAGES} pages of referrers of {digest}")

    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            self.send(Call("HEAD", f"/v2/{repo}/blobs/{digest}", pull_scope(repo)))
        except NotFound:
            return False
        return True

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. Returns None when mounted (201); else the Location of the upload the
        registry opened instead (202), for upload_blob to use, or "" when no upload was opened."""
        if not self.uploads.mounts:
            return ""
        scope = f"{push_scope(repo)} {pull_scope(from_repo)}"
        try:
            r = self.send(Call("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}", scope,
                               ok=(201, 202)))
        except RegistryError as exc:
            if exc.retryable:
                raise
            return ""  # mounting is an optimisation: a refusal means upload instead
        if r.status_code == 201:
            return None
        location = r.headers.get("location")
        return urljoin(self.base_url + "/", location) if location else ""

    def cancel_upload(self, repo: str, location: str) -> None:
        with contextlib.suppress(RegistryError):  # best effort: registries purge stale uploads themselves
            self.send(Call("DELETE", location, push_scope(repo), ok=(200, 202, 204, 404)))

    def repository_empty(self, repo: str) -> bool:
        """Whether the repository has no tags (or does not exist yet): then none of its blobs can be there
        but through a mount, and the blob HEADs of a cold copy can be skipped. Unsure means False."""
        try:
            r = self.send(Call("GET", f"/v2/{repo}/tags/list?n=1", pull_scope(repo), ok=(200, 404)))
            return r.status_code == 404 or not (r.json() or {}).get("tags")
        except (RegistryError, ValueError, AttributeError):
            return False

    @contextlib.contextmanager
    def open_blob(self, repo: str, digest: str, retry: bool = True) -> Iterator[httpx.Response]:
        r = self.send(Call("GET", f"/v2/{repo}/blobs/{digest}", pull_scope(repo), stream=True, retry=retry))
        try:
            yield r
        finally:
            r.close()

    def delete_manifest(self, repo: str, digest: str) -> None:
        """DELETE a manifest by digest (a registry may refuse: 405 UNSUPPORTED where deletion is off)."""
        self.send(Call("DELETE", f"/v2/{repo}/manifests/{digest}", push_scope(repo), ok=(202, 200, 204),
                       retry=False))

    def read_blob(self, repo: str, digest: str, limit: int) -> bytes:
        """A small blob whole (a signature payload); more than `limit` bytes is refused, never read on."""
        with self.open_blob(repo, digest) as r:
            body = read_capped(r, limit + 1)
        if len(body) > limit:
            raise RegistryError(f"{self.registry}/{repo}: blob {digest} is larger than {limit} bytes")
        return body

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes], retry: bool = True,
                    location: str | None = None) -> None:
        """POST an upload (or use `location`, one a refused mount opened), then one streaming PUT ?digest=
        (memory stays flat whatever the size); a registry with `Uploads.chunk` takes a larger blob as PATCHes of
        that size first (memory: one chunk)."""
        scope = push_scope(repo)
        if not location:
            r = self.send(Call("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,), retry=retry))
            if not r.headers.get("location"):
                raise RegistryError(f"{self.registry}/{repo}: upload opened without a Location")
            location = urljoin(self.base_url + "/", r.headers["location"])
        try:
            rest: Iterable[bytes] = chunks
            if self.uploads.chunk and size > self.uploads.chunk:
                location, rest, size = self._patch_chunks(location, scope, chunks, size)
            target = location + ("&" if "?" in location else "?") + f"digest={digest}"
            self.send(Call("PUT", target, scope, content=rest, ok=(201, 204),
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}))
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: do not leave the upload open
                self.send(Call("DELETE", location, scope, ok=(200, 202, 204, 404)))
            raise

    def _patch_chunks(self, location: str, scope: str, chunks: Iterable[bytes],
                      size: int) -> tuple[str, list[bytes], int]:
        """PATCH whole chunks while more than one chunk's worth remains; returns the upload's last Location
        and what is left for the final PUT (so the PUT still comes only after the caller's last bytes)."""
        step, sent, buffer = self.uploads.chunk, 0, bytearray()
        for piece in chunks:
            buffer += piece
            while len(buffer) > step and sent + step < size:
                body = bytes(buffer[:step])
                del buffer[:step]
                r = self.send(Call("PATCH", location, scope, content=body, ok=(202,), retry=False,
                                   headers={"Content-Type": "application/octet-stream", "Content-Length": str(step),
                                            "Content-Range": f"{sent}-{sent + step - 1}"}))
                sent += step
                location = urljoin(location, r.headers.get("location") or location)
        return location, [bytes(buffer)], len(buffer)
