"""The Image mirror pages come from Jinja2 templates with autoescape: a hostile section name, tag, error text
or query string shows as text on every page and never becomes markup. The pages render from a SQLite
tracking database in a fresh interpreter (Airflow configures itself on import), as test_tracking does."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

from dmi_provider.tracking.store import MirrorOutcome, TrackingStore

SECTION = "<script>alert(\"s\")</script>'"
TARGET = "ecr.example/evil/<script>x</script>:\"1'"
ERROR = "<img src=x onerror=alert(1)>"
RENDER = """
import asyncio, json, sys
from starlette.testclient import TestClient
from dmi_provider.plugins import history as h, query as q
q.readable_dags = lambda user: {"dmi_mirror"}
q.triggerable = lambda user, dag_ids: set(dag_ids)  # Mirror now's form carries the section too
q.failed_task_links = lambda rows: {r["id"]: "../dags/x/runs/y/tasks/" + sys.argv[1] for r in rows}
q.waiting_for_pulls = lambda dag_ids: {}
section, target = sys.argv[1], sys.argv[2]
started = "dmi_mirror|" + section + "|" + section
pages = {
    "state": h.state_page(None, h.StateAsk(triggered=started)),
    "state of the section": h.state_page(None, h.StateAsk(section=section)),
    "history": h.history_page(None, h.HistoryAsk(image=section, dag_id="dmi_mirror", since=section)),
    "image": h.image_page(None, target=target, triggered=started),
}
out = {name: asyncio.run(page).body.decode() for name, page in pages.items()}
out["forbidden"] = h._message("Image mirror: not allowed", 403, "forbidden", dag_id=section).body.decode()
static = TestClient(h.app).get("/static/dmi.css")
out["css"] = f"{static.status_code} {static.headers['content-type']} {len(static.text)}"
print(json.dumps(out))
"""


def test_every_page_escapes_a_hostile_section_and_tag(tmp_path):
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    store = TrackingStore(url)
    at = datetime(2026, 11, 20, 8, tzinfo=UTC)
    for n, status in enumerate(("copied", "failed", "quarantined")):
        store.record(MirrorOutcome("dmi_mirror", f"manual__{SECTION}{n}", SECTION, f"hub.example/x/y:{SECTION}",
                                   TARGET, status, target_digest="sha256:" + "a" * 64 if n == 0 else None,
                                   error=ERROR if status != "copied" else None, ratelimit_remaining=9,
                                   ratelimit_limit=10, ratelimit_source=SECTION, blobs_copied=1, finished_at=at,
                                   verified_by="SHA256:" + SECTION if n == 0 else None))
    store.close()
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW_CONN_DMI_TRACKING": url,
           "DMI_CONFIG": str(tmp_path / "none.ini")}
    done = subprocess.run([sys.executable, "-c", RENDER, SECTION, TARGET], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = json.loads(done.stdout.splitlines()[-1])
    css = pages.pop("css").split()
    assert css[0] == "200" and css[1].startswith("text/css") and int(css[-1]) > 1000  # the stylesheet is served
    escaped_section = "&lt;script&gt;alert(&#34;s&#34;)&lt;/script&gt;&#39;"
    for name, html in pages.items():
        body = html.split("<body>", 1)[1]
        assert "<script" not in body and "<img" not in body, name  # nothing of the values became markup
        assert escaped_section in body, name
    assert "&lt;script&gt;x&lt;/script&gt;:&#34;1&#39;" in pages["image"]  # the tag, in the title and rows
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["image"]  # the error text
    assert 'data-section="' + escaped_section + '"' in pages["state"]  # the budget chart's marks
    assert f'value="{escaped_section}"' in pages["state of the section"]  # the filter keeps the hostile value
    assert "<a href=\"./?section=%3Cscript%3E" in pages["state"]  # links carry it quoted
    assert "You may not start runs of " + escaped_section in pages["forbidden"]
    # verify (issue 27): the verified badge names the key, a quarantined image shows as such
    assert f'<span class="badge verified" title="verified: signed by SHA256:{escaped_section}">verified</span>' \
        in pages["history"]
    assert '<span class="quarantined">quarantined</span>' in pages["history"]


def test_the_charts_escape_what_they_label():
    from dmi_provider.plugins.charts import blob_chart, run_strip

    at = datetime(2026, 11, 20, 8, tzinfo=UTC)
    strip = run_strip([{"status": "copied", "finished_at": at, "run_id": "<b>run</b>"}])
    assert "&lt;b&gt;run&lt;/b&gt;" in strip and "<b>" not in strip and 'data-runs="1" data-copied="1"' in strip
    chart = blob_chart([{"run_id": "r\"><script>", "status": "copied", "finished_at": at, "bytes_transferred": 5,
                         "blobs_copied": 2, "blobs_mounted": 1, "blobs_skipped": 0}])
    assert 'data-run="r&#34;&gt;&lt;script&gt;" data-status="copied" data-bytes="5" data-copied="2"' in chart
    assert "<script>" not in chart
