"""OCI Distribution client and copy engine. Plain Python: no Airflow import here."""

from __future__ import annotations

import sys
import types

# httpx imports its command-line client on import when click, rich and pygments are installed (they are, beside
# Airflow): some 40 ms of every `dmi copy`. DMI never runs that client; a stand-in module keeps it unloaded.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _cli = types.ModuleType("httpx._main")
    _cli.main = lambda *args, **kwargs: sys.exit("httpx's command line is not loaded in this process")  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _cli
