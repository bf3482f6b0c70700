"""Blob locations and leases a fleet shares through the tracking database (PostgreSQL, started by the
suite): one writer per blob, the others wait and then find it; a dead worker's lease runs out; upload
slots per registry; an unreachable database never fails a copy. The Celery system test runs the same
across two real workers (tests/system/test_fleet.py)."""

from __future__ import annotations

from dmi_provider.tracking.fleet import SharedBlobLocations

REG, DIGEST = "registry.example:5000", "sha256:" + "ab" * 32


def test_an_unreachable_database_never_fails_a_copy(caplog):
    store = SharedBlobLocations("postgresql+psycopg2://dmi:nope@127.0.0.1:1/none")
    store.add(REG, DIGEST, "team/a")  # kept in memory
    assert store.holders(REG, DIGEST) == {"team/a"}
    with store.writing(REG, DIGEST, "team/b") as waited, store.uploading(REG):
        assert waited is False
    assert "shared blob locations unavailable (OperationalError)" in caplog.text
    assert "nope" not in caplog.text
    store.close()
