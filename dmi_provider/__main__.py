from __future__ import annotations

from dmi_provider.cli import main

raise SystemExit(main())
