"""`make demo-ui`, as a new user runs it: it prints the URL and the login, the Image mirror page shows the
demo's story in a browser, and Ctrl-C (SIGINT to its process group, as a terminal sends it) stops every
process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.rig.browser import chromium, login, plugin_frame
from tests.rig.process import free_port, port_open

ARTIFACTS = ROOT / "tests" / "artifacts"


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_make_demo_ui_runs_until_ctrl_c_and_leaves_nothing_running(tmp_path):
    port = free_port()
    log = tmp_path / "demo-ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "-s", "demo-ui"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "DMI_DEMO_PORT": str(port)})
    try:
        deadline = time.monotonic() + 600
        while "Press Ctrl-C" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(1)
        text = log.read_text(errors="replace")
        url = re.search(r"URL:\s+(http://\S+)/plugin/dmi-image-mirror", text).group(1)  # type: ignore[union-attr]
        user, password = re.search(r"login:\s+(\S+) / (\S+)", text).groups()  # type: ignore[union-attr]
        assert url == f"http://127.0.0.1:{port}"
        assert [line.split(": ")[-1] for line in text.splitlines() if line.startswith("DAG run ")] == [
            "success", "failed", "success"]  # copied; unchanged with pilot failing; a new digest copied
        started = descendants(proc.pid)
        with chromium() as browser:
            page = login(browser, url, user, password)
            page.goto(f"{url}/plugin/dmi-image-mirror")
            frame = plugin_frame(page, ".dmi-cards")
            cards = frame.query_selector(".dmi-cards")
            assert (cards.get_attribute("data-images"), cards.get_attribute("data-failing")) == ("3", "0")
            strips = {frame.evaluate("e => e.closest('tr').querySelector('td a').innerText", s):
                      (s.get_attribute("data-runs"), s.get_attribute("data-failed"), s.get_attribute("data-copied"))
                      for s in frame.query_selector_all("svg.dmi-strip")}
            assert {t.split("/", 1)[1]: v for t, v in strips.items()} == {
                "istio/pilot:1.7.0": ("3", "1", "1"), "istio/proxyv2:1.7.0": ("3", "0", "2"),
                "mirror/alpine:3.20": ("3", "0", "1")}
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-ui.png"))
    finally:
        if proc.poll() is None:  # a demo that already died left its reason in the assertion above
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(180)
    text = log.read_text(errors="replace")
    assert "== stopping" in text
    deadline = time.monotonic() + 60
    while [p for p in started if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in started if alive(p)]
    assert not left, left
    assert not port_open(port)
