"""What a new user meets first, produced for real on loopback: each network, TLS, proxy and AWS failure is
one line naming the host (or proxy, or connection) and what to do, with no traceback and no secret; a
private CA is trusted through its key; a forward proxy (Debian's tinyproxy) carries every request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.rig.fixtures import TLS_USER, rig_client
from tests.rig.forward_proxy import ForwardProxy
from tests.rig.images import ImageFactory, push
from tests.rig.process import free_port
from tests.rig.registry import Registry
from tests.rig.services import MOTO_REGION, Moto

DMI = Path(sys.executable).with_name("dmi")
PROXY_USER = ("proxyuser", "proxy-secret-pass")
CLEAN = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "DOCKER_CONFIG": "/nonexistent",
         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",  # never ask a metadata service off this machine
         **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # the code under test, not an install


def dmi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DMI), *args], capture_output=True, text=True, timeout=300, env=CLEAN | (env or {}))


def one_line(done: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The failure's line on stderr: exactly one non-progress line, no traceback, no secret anywhere."""
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    for secret in secrets:
        assert secret not in out
    lines = [line for line in done.stderr.splitlines() if line.startswith("dmi ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="session")
def seeded(tls_registry: Registry) -> str:
    """An image on the TLS registry: its repository."""
    push(rig_client(tls_registry, TLS_USER), "fc/app", "1", ImageFactory().image())
    return "fc/app"


@pytest.fixture(scope="session")
def proxy(rig_root: Path) -> Iterator[ForwardProxy]:
    started = ForwardProxy(rig_root / "tinyproxy").start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def auth_proxy(rig_root: Path) -> Iterator[ForwardProxy]:
    started = ForwardProxy(rig_root / "tinyproxy-auth", user=PROXY_USER).start()
    yield started
    started.stop()


@pytest.fixture
def html_server() -> Iterator[str]:
    """A web server that answers every request with a login page, as a captive portal does."""
    class Portal(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _page(self) -> None:
            body = b"<!DOCTYPE html><html><head><title>Guest Wi-Fi login</title></head><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _page

    server = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# -- the registry side, through `dmi copy` ---------------------------------------------------------------

def test_connection_refused_is_one_line(open_registry):
    closed = f"127.0.0.1:{free_port()}"
    done = dmi("copy", "--insecure", closed, "--insecure", open_registry.host, f"{closed}/a/b:1",
               f"{open_registry.host}/fc/refused:1")
    assert done.returncode == 1
    assert one_line(done) == (f"dmi copy: failed: {closed}: connection refused by {closed}: nothing listens there "
                              "(wrong host or port, or the registry is down) (gave up after 5 attempts)")


def test_dns_failure_is_one_line(open_registry):
    done = dmi("copy", "--insecure", open_registry.host, "no-such-registry.invalid/a/b:1",
               f"{open_registry.host}/fc/dns:1")
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith("dmi copy: failed: no-such-registry.invalid: cannot resolve no-such-registry.invalid "
                           "(DNS: ")
    assert line.endswith("check the registry's name, or reach it through a proxy (HTTPS_PROXY)")


def test_an_untrusted_ca_is_named_and_then_trusted_through_the_key(tls_registry, seeded, test_ca, open_registry):
    src = f"{tls_registry.host}/{seeded}:1"
    env = {"DMI_SRC_PASSWORD": TLS_USER[1]}
    done = dmi("copy", "--src-creds", TLS_USER[0], "--insecure", open_registry.host, src,
               f"{open_registry.host}/fc/tls:1", env=env)
    assert done.returncode == 1
    line = one_line(done, TLS_USER[1])
    assert line.startswith(f"dmi copy: failed: {tls_registry.host}: TLS certificate of {tls_registry.host} not "
                           "trusted (unable to get local issuer certificate); trust its CA: give the CA's PEM file as "
                           "--src-ca-bundle, or in SSL_CERT_FILE (verification is never turned off)")

    trusted = dmi("copy", "--src-creds", TLS_USER[0], "--src-ca-bundle", str(test_ca.path), "--insecure",
                  open_registry.host, "--json", src, f"{open_registry.host}/fc/tls:1", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["status"] == "copied"
    # SSL_CERT_FILE works as for curl: the system store is where the CA is looked for.
    by_env = dmi("copy", "--src-creds", TLS_USER[0], "--insecure", open_registry.host, "--json", src,
                 f"{open_registry.host}/fc/tls:1", env=env | {"SSL_CERT_FILE": str(test_ca.path)})
    assert by_env.returncode == 0, by_env.stderr
    # A bundle that is not there is bad input, named.
    missing = dmi("copy", "--src-ca-bundle", "/nonexistent/ca.pem", src, f"{open_registry.host}/fc/tls:1")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("dmi copy: --src-ca-bundle: CA bundle '/nonexistent/ca.pem' cannot be read (No "
                                      "such file or directory): give a PEM file with the CA's certificate")


def test_plain_http_to_a_tls_registry_says_so(tls_registry, seeded, open_registry):
    done = dmi("copy", "--insecure", tls_registry.host, "--insecure", open_registry.host,
               f"{tls_registry.host}/{seeded}:1", f"{open_registry.host}/fc/plain:1")
    assert done.returncode == 1
    assert one_line(done) == (f"dmi copy: failed: HEAD http://{tls_registry.host}/v2/{seeded}/manifests/1: HTTP 400; "
                              "this registry may speak HTTPS (a TLS port answers plain HTTP with 400); if it does, drop "
                              "--insecure for it")


def test_an_html_answer_is_called_what_it_is(html_server, open_registry):
    done = dmi("copy", "--insecure", html_server, "--insecure", open_registry.host, f"{html_server}/a/b:1",
               f"{open_registry.host}/fc/html:1")
    assert done.returncode == 1
    assert one_line(done) == (
        f"dmi copy: failed: {html_server}: HEAD http://{html_server}/v2/a/b/manifests/1 answered HTTP 200 with an "
        "HTML page, not the registry API: a captive portal, a proxy's login page, or no "
        "registry at this address; check the registry's host and the proxy")


def test_docker_hubs_429_is_one_line_and_not_hammered(hub, hub_registry, open_registry, factory):
    from tests.rig.fixtures import HUB_USER
    from tests.rig.proxy import Fault

    push(rig_client(hub_registry, HUB_USER), "fc/limited", "1", factory.image())
    args = ("copy", "--insecure", hub.host, "--insecure", open_registry.host, f"{hub.host}/fc/limited:1",
            f"{open_registry.host}/fc/limited:1")
    # Spent by another machine behind the same IP: the HEAD says 0 left, so DMI does not even ask.
    hub.ratelimit, hub.remaining = 5, 0
    done = dmi(*args)
    assert done.returncode == 1
    assert one_line(done).startswith(f"dmi copy: failed: {hub.host}: 1 pull needed, 0 of 5 left in its 6h window "
                                     "(counted for 127.0.0.1) and 1 kept in reserve (--pull-reserve): try again in ")
    assert hub.count("GET", "manifest") == 0
    # The HEAD said there were pulls, but the GET meets a 429 (someone was faster): one line, asked once.
    hub.remaining = 5
    hub.inject(Fault(method="GET", path="/manifests/", status=429, headers={"Retry-After": "60"},
                     body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'))
    done = dmi(*args)
    assert done.returncode == 1
    line = one_line(done)
    assert "HTTP 429 TOOMANYREQUESTS: You have reached your pull rate limit." in line
    assert f"{hub.host}'s pull limit is spent: wait for its window (the registry asks to retry after 60s)" in line
    assert line.endswith("; log in with --src-creds for an account's larger limit")
    assert hub.count("GET", "manifest", 429) == 1  # asked once, not five times


# -- proxies -----------------------------------------------------------------------------------------------

def test_every_request_goes_through_the_proxy_and_no_proxy_bypasses_it(proxy, tls_registry, seeded, test_ca,
                                                                       tmp_path):
    dst = Registry("tls-target", tmp_path / "dst", tls=test_ca.server("tls-target"), ca=test_ca.path).start()
    try:
        before = proxy.connects()
        env = {"DMI_SRC_PASSWORD": TLS_USER[1], "HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(test_ca.path),
               "DMI_CACHE_DIR": str(tmp_path / "cache")}
        done = dmi("copy", "--json", "--src-creds", TLS_USER[0], f"{tls_registry.host}/{seeded}:1",
                   f"{dst.host}/fc/proxied:1", env=env)
        assert done.returncode == 0, done.stderr
        requests = json.loads(done.stdout)["requests"]
        # httpx keeps connections alive through the tunnel: at least one CONNECT per host, none bypassed.
        assert proxy.connects(tls_registry.host) >= 1 and proxy.connects(dst.host) >= 1
        tunnels = proxy.connects() - before
        assert tunnels <= sum(sum(v.values()) for v in requests.values())

        before = proxy.connects()
        bypass = dmi("copy", "--json", "--force", "--src-creds", TLS_USER[0], f"{tls_registry.host}/{seeded}:1",
                     f"{dst.host}/fc/proxied:1", env=env | {"NO_PROXY": "127.0.0.1"})
        assert bypass.returncode == 0, bypass.stderr
        assert proxy.connects() == before  # NO_PROXY: not one request through the proxy
    finally:
        dst.stop()


def test_a_proxy_asking_for_a_login(auth_proxy, tls_registry, seeded, test_ca, open_registry):
    src = f"{tls_registry.host}/{seeded}:1"
    env = {"DMI_SRC_PASSWORD": TLS_USER[1], "SSL_CERT_FILE": str(test_ca.path), "NO_PROXY": open_registry.host}
    args = ("copy", "--src-creds", TLS_USER[0], "--insecure", open_registry.host, src, f"{open_registry.host}/fc/pa:1")
    anonymous = dmi(*args, env=env | {"HTTPS_PROXY": auth_proxy.url.replace(f"{PROXY_USER[0]}:{PROXY_USER[1]}@", "")})
    assert anonymous.returncode == 1
    assert one_line(anonymous) == (
        f"dmi copy: failed: {tls_registry.host}: proxy http://127.0.0.1:{auth_proxy.port} requires authentication "
        "(407); put them in the proxy URL: http://USER:PASSWORD@host:port")
    wrong = dmi(*args, env=env | {"HTTPS_PROXY": f"http://{PROXY_USER[0]}:wrong-proxy-pass@127.0.0.1:{auth_proxy.port}"})
    assert wrong.returncode == 1
    assert one_line(wrong, "wrong-proxy-pass") == (
        f"dmi copy: failed: {tls_registry.host}: proxy http://***@127.0.0.1:{auth_proxy.port} requires "
        "authentication (401); it refused the user and password in the proxy URL")
    right = dmi(*args, env=env | {"HTTPS_PROXY": auth_proxy.url})
    assert right.returncode == 0, right.stderr
    assert PROXY_USER[1] not in right.stdout + right.stderr
    assert auth_proxy.connects(tls_registry.host) >= 1


def test_a_proxy_that_is_not_there(tls_registry, seeded, test_ca, open_registry):
    closed = free_port()
    done = dmi("copy", "--insecure", open_registry.host, f"{tls_registry.host}/{seeded}:1",
               f"{open_registry.host}/fc/np:1",
               env={"HTTPS_PROXY": f"http://127.0.0.1:{closed}", "NO_PROXY": open_registry.host,
                    "SSL_CERT_FILE": str(test_ca.path)})
    assert done.returncode == 1
    assert one_line(done).startswith(f"dmi copy: failed: {tls_registry.host}: proxy http://127.0.0.1:{closed} refused "
                                     "the connection: is it running, and is the proxy setting (HTTPS_PROXY or the "
                                     "registry's proxy) right?")


# -- AWS, through `dmi plan` on an ECR config -----------------------------------------------------------------

@pytest.fixture
def ecr_config(tmp_path: Path, open_registry) -> Path:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        refresh = 1d
        source-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        [aws/app]
        image = app
        source-repository = fc
        project = fc
        tag = 1
    """))
    return config


def _plan_error(done: subprocess.CompletedProcess[str], *secrets: str) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out, out
    for secret in secrets:
        assert secret not in out
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("[aws/app] error: ")]
    return line.removeprefix("[aws/app] error: ")


def test_aws_without_region_or_credentials(ecr_config):
    who = "ECR (connection 'aws_default', region "
    no_region = _plan_error(dmi("plan", str(ecr_config)))
    assert no_region == (f"{who}from the connection): cannot look up repository fc/app (ecr:DescribeRepositories): no AWS "
                         "region: set AWS_DEFAULT_REGION, or region_name in the AWS connection's extra")
    no_credentials = _plan_error(dmi("plan", str(ecr_config), env={"AWS_DEFAULT_REGION": MOTO_REGION}))
    assert no_credentials.startswith(f"{who}{MOTO_REGION}): cannot look up repository fc/app (ecr:DescribeRepositories): no AWS "
                                     "credentials (Unable to locate credentials): give the AWS connection a key")


def test_aws_unreachable_refused_and_denied(ecr_config, tmp_path):
    closed = free_port()
    conn = {"conn_type": "aws", "login": "AKIAEXAMPLEKEY", "password": "aws-secret-never-shown",
            "extra": {"region_name": MOTO_REGION, "endpoint_url": f"http://127.0.0.1:{closed}",
                      "config_kwargs": {"retries": {"max_attempts": 1}}}}
    env = {"AWS_DEFAULT_REGION": MOTO_REGION, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn)}
    unreachable = _plan_error(dmi("plan", str(ecr_config), env=env), "aws-secret-never-shown")
    assert unreachable.startswith(f"ECR (connection 'aws_default', region {MOTO_REGION}): cannot look up repository fc/app "
                                  "(ecr:DescribeRepositories): the ECR API is unreachable (Could not connect to the "
                                  f"endpoint URL: \"http://127.0.0.1:{closed}/\"); check the network route")

    # moto checking signatures against its IAM: the first 2 calls are free, to make a user without rights.
    moto = Moto(tmp_path / "moto-iam", env={"INITIAL_NO_AUTH_ACTION_COUNT": "2"}).start()
    try:
        import boto3

        iam = boto3.client("iam", region_name=MOTO_REGION, endpoint_url=moto.endpoint, aws_access_key_id="a",
                           aws_secret_access_key="a")
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        for login, password, expected in (
            ("AKIAUNKNOWNKEY000000", "aws-secret-never-shown", "AWS does not accept the credentials "
             "(InvalidClientTokenId: The security token included in the request is invalid.): check the access key "
             "and secret of the AWS connection (or the environment's)"),
            (key["AccessKeyId"], key["SecretAccessKey"], "denied (AccessDenied: User: arn:aws:iam::123456789012:user/nobody is not authorized to "
             "perform: ecr:DescribeRepositories): the identity needs ecr:GetAuthorizationToken"),
        ):
            conn = {"conn_type": "aws", "login": login, "password": password,
                    "extra": {"region_name": MOTO_REGION, "endpoint_url": moto.endpoint}}
            line = _plan_error(dmi("plan", str(ecr_config), env={"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn),
                                                                 "AWS_DEFAULT_REGION": MOTO_REGION}), password)
            assert line.startswith(f"ECR (connection 'aws_default', region {MOTO_REGION}): cannot look up repository fc/app "
                                   "(ecr:DescribeRepositories): " + expected), line
    finally:
        moto.stop()


def test_a_dag_run_reaches_tls_registries_only_through_proxies(airflow_env, auth_proxy, proxy, tls_registry, seeded,
                                                               test_ca, tmp_path):
    """The source through its connection's extras (a proxy with a login, the CA as PEM text), the target
    through config.ini's keys (target-proxy, target-ca-bundle): no proxy in the environment at all."""
    from dmi_provider.tracking.store import TrackingStore

    dst = Registry("tls-dag-target", tmp_path / "dst", tls=test_ca.server("tls-dag-target"), ca=test_ca.path).start()
    try:
        (tmp_path / "ca.pem").write_bytes(test_ca.pem)
        config = tmp_path / "config.ini"
        config.write_text(textwrap.dedent(f"""\
            [DEFAULT]
            refresh = 1w
            [proxied]
            source-registry = {tls_registry.host}
            source-conn-id = tls_source
            image = {seeded}
            tag = 1
            target = registry
            target-registry = {dst.host}
            target-repository = dag/proxied
            target-proxy = http://127.0.0.1:{proxy.port}
            target-ca-bundle = ca.pem
        """))
        source = {"conn_type": "container_registry", "host": tls_registry.host, "login": TLS_USER[0],
                  "password": TLS_USER[1], "extra": {"proxy": auth_proxy.url, "ca_bundle": test_ca.pem.decode()}}
        counts = (auth_proxy.connects(tls_registry.host), proxy.connects(dst.host), proxy.connects(tls_registry.host),
                  auth_proxy.connects(dst.host))
        db = tmp_path / "tracking.db"
        run = airflow_env.run("dmi_mirror", config, env={"AIRFLOW_CONN_TLS_SOURCE": json.dumps(source),
                                                          "DB_PATH": str(db), "DMI_CACHE_DIR": str(tmp_path)})
        assert run["state"] == "success", run["log"][-5000:]
        assert auth_proxy.connects(tls_registry.host) > counts[0]  # the source, through its own proxy
        assert proxy.connects(dst.host) > counts[1]  # the target, through target-proxy
        assert (proxy.connects(tls_registry.host), auth_proxy.connects(dst.host)) == counts[2:]  # and not crossed
        for secret in (PROXY_USER[1], TLS_USER[1]):
            assert secret not in run["log"]
        (row,) = TrackingStore(f"sqlite:///{db}").history()
        assert row["status"] == "copied" and row["target"] == f"{dst.host}/dag/proxied:1"
    finally:
        dst.stop()


def test_a_registry_connection_that_is_missing_or_wrong(tmp_path, open_registry):
    config = tmp_path / "config.ini"
    config.write_text(textwrap.dedent(f"""\
        [DEFAULT]
        refresh = 1d
        target = registry
        target-registry = {open_registry.host}
        insecure-registries = {open_registry.host}
        project = fc
        tag = 1
        [missing]
        image = a
        source-conn-id = nowhere
        [bad-ca]
        image = b
        source-conn-id = bad_ca
        [bad-proxy]
        image = c
        source-conn-id = bad_proxy
    """))
    env = {"AIRFLOW_CONN_BAD_CA": json.dumps({"conn_type": "container_registry", "login": "u", "password": "conn-pw",
                                              "extra": {"ca_bundle": "/nonexistent/ca.pem"}}),
           "AIRFLOW_CONN_BAD_PROXY": json.dumps({"conn_type": "container_registry", "login": "u",
                                                 "password": "conn-pw",
                                                 "extra": {"proxy": "proxy:3128"}})}
    done = dmi("plan", str(config), env=env)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "conn-pw" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "[missing] error: connection 'nowhere' does not exist: create it (type container_registry, or any type with "
        "login and password), or remove the conn-id from the section",
        "[bad-ca] error: connection 'bad_ca': CA bundle '/nonexistent/ca.pem' cannot be read (No such file or "
        "directory): give a PEM file with the CA's certificate",
        "[bad-proxy] error: connection 'bad_proxy': proxy 'proxy:3128' is not a proxy URL: write http://host:port (or "
        "http://user:password@host:port)",
    ]
