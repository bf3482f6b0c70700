"""What to change after a registry error, in the words of whoever reads it. Plain Python: no Airflow here.

The registry layer says what happened (a typed error, the side it met: source or target); `hint` adds
what to do, naming the settings of the caller: config.ini's keys for the DAGs and `dmi sync` / `dmi plan`
(`config_hint`), the flags of `dmi copy` for that command (cli.py gives its own `Words`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dmi_provider.registry.budget import PullsNeverFit, PullsShort
from dmi_provider.registry.errors import (
    LoginNeeded,
    MaybePlainHTTP,
    NeedsTLS,
    PinMoved,
    RateLimited,
    RegistryError,
    TLSUntrusted,
)


@dataclass(frozen=True)
class Words:
    """How a caller names the settings a hint points at; pairs are (source, target)."""

    login: tuple[str, str]
    ca_bundle: tuple[str, str]
    ca_elsewhere: str  # where else a CA may be given, after the setting itself
    allow_plain_http: str
    forbid_plain_http: str
    pin: str
    reserve: str  # the share of a pull limit never spent
    fewer_platforms: str


CONFIG_WORDS = Words(
    login=("source-conn-id", "target-conn-id"),
    ca_bundle=("source-ca-bundle", "target-ca-bundle"),
    ca_elsewhere=" in config.ini, in the registry connection's ca_bundle extra,",
    allow_plain_http="list it in insecure-registries",
    forbid_plain_http="remove it from insecure-registries",
    pin="update the pin in config.ini",
    reserve="pull-reserve",
    fewer_platforms="mirror fewer platforms",
)


def _side(pair: tuple[str, str], side: str | None) -> str:
    return {"source": pair[0], "target": pair[1]}.get(side or "", f"{pair[0]} / {pair[1]}")


def hint(exc: BaseException, words: Words) -> str:
    """'; what to change' for an error DMI understands, '' when there is nothing to add."""
    side = exc.side if isinstance(exc, RegistryError) else None
    if isinstance(exc, LoginNeeded):
        return f"; give a login ({_side(words.login, side)})"
    if isinstance(exc, PullsShort):
        return f" ({words.reserve})"
    if isinstance(exc, PullsNeverFit):
        return (f"; lower {words.reserve} or {words.fewer_platforms}, or log in with {words.login[0]} for an "
                "account's larger limit")
    if isinstance(exc, RateLimited):
        return f"; log in with {words.login[0]} for an account's larger limit"
    if isinstance(exc, NeedsTLS):
        return f"; {words.forbid_plain_http}" if exc.certain else f"; if it does, {words.forbid_plain_http}"
    if isinstance(exc, TLSUntrusted):
        return (f"; trust its CA: give the CA's PEM file as {_side(words.ca_bundle, side)}{words.ca_elsewhere} or "
                "in SSL_CERT_FILE (verification is never turned off)")
    if isinstance(exc, MaybePlainHTTP):
        return f"; {words.allow_plain_http} only if it really has no TLS"
    if isinstance(exc, PinMoved):
        return f"; {words.pin} once the new digest is trusted"
    return ""


def config_hint(exc: BaseException) -> str:
    """`hint` in config.ini's words: for the operators, `dmi sync` and `dmi plan`."""
    return hint(exc, CONFIG_WORDS)
