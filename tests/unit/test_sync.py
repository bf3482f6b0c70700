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


def test_outside_a_task_airflow_is_loaded_only_where_a_connection_could_be(tmp_path):
    from dmi_provider.hooks.connections import may_hold_connection

    home = {"AIRFLOW_HOME": str(tmp_path)}
    assert not may_hold_connection("dmi_tracking", home)  # no airflow.cfg, no variable: nothing to look up
    assert may_hold_connection("dmi_tracking", home | {"AIRFLOW_CONN_DMI_TRACKING": "postgresql://x"})
    assert may_hold_connection("dmi_tracking", home | {"AIRFLOW__SECRETS__BACKEND": "some.Backend"})
    (tmp_path / "airflow.cfg").write_text("[core]\nexecutor = LocalExecutor\n[secrets]\nbackend =\n")
    assert not may_hold_connection("dmi_tracking", home)
    (tmp_path / "airflow.cfg").write_text("[secrets]\nbackend = airflow.providers.hashicorp.secrets.vault.Vault\n")
    assert may_hold_connection("dmi_tracking", home)
    (tmp_path / "airflow.cfg").write_text("[workers]\nsecrets_backend = some.WorkerBackend\n")
    assert may_hold_connection("dmi_tracking", home)
    (tmp_path / "airflow.cfg").unlink()
    assert may_hold_connection("dmi_tracking", home | {"_AIRFLOW_PROCESS_CONTEXT": "server"})  # the metadata DB
    assert may_hold_connection("dmi_tracking", home | {"AIRFLOW__WORKERS__SECRETS_BACKEND": "x.Y"})
