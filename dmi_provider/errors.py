"""The one base error of DMI. Plain Python: no Airflow import here.

Every error DMI raises on purpose derives from `DmiError`; its `retryable` tells the operators whether
Airflow should try the task again (a network hiccup) or fail it at once (a 404, a refusal, a lying
manifest), and the CLI prints it as one line without a traceback.
"""

from __future__ import annotations


class DmiError(Exception):
    """A failure DMI understands; `retryable` says whether trying again later can help."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None):
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


def first_line(exc: BaseException, limit: int = 300) -> str:
    """A library exception's message as one short line (its `message`, else its first argument)."""
    text = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else exc)).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    """DMI's own errors say; anything else (a bug, an unexpected library error) gets Airflow's retries."""
    return exc.retryable if isinstance(exc, DmiError) else True
