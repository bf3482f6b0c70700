"""skopeo as an independent oracle: what does the registry really hold?"""

from __future__ import annotations

import subprocess


def inspect_raw(reference: str, credentials: tuple[str, str] | None = None) -> bytes:
    argv = ["skopeo", "inspect", "--raw", "--tls-verify=false", "--retry-times", "0"]
    if credentials:
        argv += ["--creds", f"{credentials[0]}:{credentials[1]}"]
    argv.append(f"docker://{reference}")
    done = subprocess.run(argv, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo inspect {reference} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
