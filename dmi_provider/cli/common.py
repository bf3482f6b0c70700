"""What the `dmi` commands share: loading a config, the tracking database, where logs and stdout go, redaction,
peak memory."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from dmi_provider.config import ConfigError, MirrorConfig, load_config

EXIT_BAD_INPUT = 2
EXIT_NO_HISTORY = 3  # dmi sync: every image mirrored or unchanged, but the tracking database took no rows


class Flags:
    """Process-wide flags of the command line."""

    debug = False  # --debug: tracebacks instead of one line per failure


def load(path: str) -> MirrorConfig | None:
    """The config, or None after printing its every problem (the caller exits 2)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def tracking_db(url: str | None, conn_id: str) -> str:
    """The tracking database of `dmi history` and `dmi prune-history`: --db, else the tracking connection (when
    one can exist outside a task), else DB_PATH, else $AIRFLOW_HOME/dmi/tracking.db."""
    if url:
        return url
    from dmi_provider.config import current_environment
    from dmi_provider.hooks.connections import tracking_url

    return tracking_url(conn_id, current_environment().db_path, cli=True)


def columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows (the header first) as lines of left-aligned columns two spaces apart."""
    widths = [max(len(str(x)) for x in col) for col in zip(*rows, strict=True)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def log_to_stderr(level: int) -> None:
    """DMI's own log lines (progress, warnings) on stderr, bare."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("dmi_provider").addHandler(handler)
    logging.getLogger("dmi_provider").setLevel(level)


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM, which starts afresh at exec), on Linux."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def redact(text: str) -> str:
    """Airflow's redaction of the secrets read from connections; none were read when Airflow is not loaded."""
    if "airflow.sdk.log" not in sys.modules:
        return text
    from airflow.sdk.log import redact

    return str(redact(text))
