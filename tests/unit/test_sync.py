"""`dmi sync CONFIG`: a whole config in one process, as the DAGs would mirror it, with their history rows."""

from __future__ import annotations

from tests.rig.cli import dmi


def test_sync_bad_input_exits_2(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[DEFAULT]\nrefresh = soon\n[a]\nimage = a\ntag = 1\nproject = p\n")
    done = dmi("sync", str(bad), env={})
    assert done.returncode == 2 and done.stdout == ""
    assert "bad.ini:2: section 'DEFAULT': refresh = 'soon'" in done.stderr
    good = tmp_path / "good.ini"
    good.write_text("[DEFAULT]\nrefresh = 1d\n[a]\nimage = a\ntag = 1\nproject = p\n")
    done = dmi("sync", "--section", "b", str(good), env={})
    assert done.returncode == 2 and done.stderr.strip() == f"dmi sync: no section 'b' in {good}"
