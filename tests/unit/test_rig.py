"""The rig's services really start, serve the real protocol, and stop."""

from __future__ import annotations

from tests.rig.process import port_open
from tests.rig.registry import Registry

ARTIFACTS = [
    ("docker", "single"),
    ("oci", "single"),
    ("docker", "multi"),
    ("oci", "multi"),
]



def test_services_stop(rig_root):
    registry = Registry("stopping", rig_root / "stopping").start()
    port = registry.port
    assert port_open(port)
    registry.stop()
    assert not port_open(port)
