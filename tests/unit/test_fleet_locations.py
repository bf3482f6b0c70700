"""Fleet limits without services: an unreachable database never fails a copy, and the limits come back when
the database does (SQLite in a folder made later). With it, the UI's cache of tracking stores, which closes
the stores it evicts. The fleet over PostgreSQL: tests/integration/test_fleet_locations.py."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from types import SimpleNamespace

from dmi_provider.tracking import fleet
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


def test_limits_come_back_when_the_database_does(tmp_path, monkeypatch, caplog):
    now = [1000.0]  # the back-off's clock, moved by hand
    monkeypatch.setattr(fleet, "time", SimpleNamespace(time=time.time, sleep=time.sleep, monotonic=lambda: now[0]))
    caplog.set_level(logging.INFO, logger=fleet.__name__)
    folder = tmp_path / "later"  # not there yet: SQLite cannot open the database
    url = f"sqlite:///{folder / 'tracking.db'}"
    first, second = SharedBlobLocations(url), SharedBlobLocations(url)
    key = f"blob {REG} {DIGEST}"
    assert first._take(key, "team/a") is None  # limits off: taken, as if alone
    now[0] += 5
    assert first._take(key, "team/a") is None  # tried again after 5 s, still not there: 10 s now
    folder.mkdir()
    now[0] += 6
    assert first._take(key, "team/a") is None
    assert not (folder / "tracking.db").exists()  # within the doubled back-off: not tried
    now[0] += 4
    assert first._take(key, "team/a") is None  # tried: a real lease this time
    assert second._take(key, "team/b") == "team/a"  # limits are on again
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == fleet.__name__]
    assert said == [
        ("WARNING", "shared blob locations unavailable (OperationalError): fleet limits are off, this task copies "
                    "as if it were alone; trying the database again in 5s"),
        ("INFO", "shared blob locations available again: fleet limits are back on"),
    ]
    for store in (first, second):
        store.close()


# The UI's stores live in dmi_provider.plugins.query, which imports Airflow (it configures itself on import):
# a fresh interpreter, as tests/unit/test_ui_templates.py does.
EVICT = """
import json, sys
from dmi_provider.plugins import query
from dmi_provider.tracking.store import TrackingStore
closed = []
close = TrackingStore.close
def spy(self):
    closed.append(self.url)
    close(self)
TrackingStore.close = spy
query.STORES_KEPT = 2
urls, opened = sys.argv[1:], []
for url in urls:
    opened.append(query._store(url))
    opened[-1].migrate()  # a page's read: a connection, back in its pool after
pooled, evicted = [s.engine.pool.checkedin() for s in opened], list(closed)
kept = query._store(urls[2]) is opened[2]  # used again: the most recent now
reopened = query._store(urls[0]) is not opened[0]  # a new store, and the least recent (urls[1]) goes
print(json.dumps({"evicted": evicted, "pooled": pooled, "kept": kept, "reopened": reopened, "closed": closed}))
"""


def test_the_ui_closes_the_tracking_stores_it_evicts(tmp_path):
    urls = [f"sqlite:///{tmp_path / f'{n}.db'}" for n in range(3)]
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", EVICT, *urls], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["evicted"] == [urls[0]]  # the third store pushed out the first
    assert found["pooled"] == [0, 1, 1]  # its engine disposed: no connection left open; the kept ones pooled
    assert found["kept"] and found["reopened"]
    assert found["closed"] == [urls[0], urls[1]]  # each evicted store closed once, least recently used first
