"""Settings are declared once, typed and checked: ranges, rules between settings,
unknown names refused or reported with the nearest real one, and one reader of
every ``JONOT_*`` variable."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from jonot_local import settings as settings_module
from jonot_local.settings import Settings, env_name, markdown_table, readme_with_table

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jonot_local"


def load(**env: str) -> Settings:
    return Settings.load(environ=env)


def test_defaults_load_and_pass_their_own_rules():
    s = load()
    assert s.threads - s.stream_reserve >= 1 and s.connection_limit > s.threads
    assert s.printer == "" and s.cloud_url == "" and s.cloud_token == ""


@pytest.mark.parametrize("env, needle", [
    ({"JONOT_THREADS": "many"}, "JONOT_THREADS: cannot read 'many' as a whole number"),
    ({"JONOT_THREADS": "1.5"}, "JONOT_THREADS"),
    ({"JONOT_DB_POOL_SIZE": "0"}, "JONOT_DB_POOL_SIZE: 0 is out of range (1 to 64)"),
    ({"JONOT_SERVICE_WINDOW": "0"}, "JONOT_SERVICE_WINDOW: 0 is out of range (1 to 1,000)"),
    ({"JONOT_DEFAULT_SERVICE_S": "nan"}, "JONOT_DEFAULT_SERVICE_S"),
    ({"JONOT_DEFAULT_SERVICE_S": "inf"}, "JONOT_DEFAULT_SERVICE_S"),
    ({"JONOT_HASH_LOOKUP_FLOOR_MS": "-1"}, "JONOT_HASH_LOOKUP_FLOOR_MS"),
    ({"JONOT_BACKUP_KEEP": "0"}, "JONOT_BACKUP_KEEP"),
    ({"JONOT_DATA_DIR": "  "}, "JONOT_DATA_DIR"),
    ({"JONOT_PRINTER": "lp0"}, "JONOT_PRINTER"),
    ({"JONOT_CLOUD_URL": "cloud.example"}, "JONOT_CLOUD_URL"),
])
def test_a_bad_environment_value_names_its_variable(env, needle):
    with pytest.raises(ValueError) as err:
        load(**env)
    assert needle in str(err.value)


@pytest.mark.parametrize("env, needle", [
    # threads - stream_reserve went negative before: no stream could ever open
    ({"JONOT_THREADS": "10", "JONOT_STREAM_RESERVE": "24"}, "JONOT_STREAM_RESERVE (24) must be"),
    ({"JONOT_THREADS": "8", "JONOT_STREAM_RESERVE": "8"}, "less than JONOT_THREADS (8)"),
    ({"JONOT_THREADS": "1000"}, "JONOT_CONNECTION_LIMIT (900) must exceed JONOT_THREADS"),
    ({"JONOT_SERVICE_MIN_S": "90", "JONOT_SERVICE_MAX_S": "60"},
     "JONOT_SERVICE_MIN_S (90) must be less than JONOT_SERVICE_MAX_S (60)"),
    ({"JONOT_SYNC_BACKOFF_MIN_S": "10", "JONOT_SYNC_BACKOFF_MAX_S": "2"},
     "JONOT_SYNC_BACKOFF_MIN_S (10.0) must not be more than JONOT_SYNC_BACKOFF_MAX_S (2.0)"),
    # a bad hash method used to surface only inside create_app, as a traceback from serve
    ({"JONOT_PASSWORD_HASH_METHOD": "md5"}, "JONOT_PASSWORD_HASH_METHOD: not a password hash"),
])
def test_settings_that_contradict_each_other_are_refused(env, needle):
    with pytest.raises(ValueError) as err:
        load(**env)
    assert needle in str(err.value)


def test_the_rules_hold_for_a_settings_object_built_directly():
    with pytest.raises(ValueError, match="JONOT_STREAM_RESERVE"):
        Settings(threads=4, stream_reserve=4)
    with pytest.raises(ValueError, match="JONOT_DB_POOL_SIZE"):
        Settings(db_pool_size=0)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="JONOT_DATA_DIR: .* is not a folder"):
        load(JONOT_DATA_DIR=str(tmp_path / "file"))


def test_overrides_are_typed_and_checked_like_the_environment(tmp_path):
    s = Settings.load({"threads": 40, "stream_reserve": "4", "connection_limit": 100.0,
                       "data_dir": str(tmp_path)}, environ={})
    assert (s.threads, s.stream_reserve, s.connection_limit) == (40, 4, 100)
    assert s.data_dir == tmp_path
    for bad in ({"threads": True}, {"threads": 2.5}, {"location_name": 3},
                {"hash_lookup_floor_ms": -5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings.load(bad, environ={})


def test_an_override_wins_over_the_environment_and_none_means_not_given(tmp_path):
    env = {"JONOT_THREADS": "50", "JONOT_DATA_DIR": str(tmp_path)}
    assert Settings.load({"threads": 60}, environ=env).threads == 60
    assert Settings.load({"data_dir": None}, environ=env).data_dir == tmp_path


def test_an_unknown_override_key_is_refused_with_the_nearest_name(tmp_path):
    with pytest.raises(ValueError) as err:
        Settings.load({"hash_lookup_flor_ms": 0}, environ={})
    assert str(err.value) == ("unknown setting 'hash_lookup_flor_ms' "
                              "(did you mean hash_lookup_floor_ms?)")
    with pytest.raises(ValueError, match="unknown setting 'wallpaper'$"):
        Settings.load({"wallpaper": "red"}, environ={})


def test_create_app_refuses_an_unknown_key(tmp_path):
    from jonot_local.app import create_app

    with pytest.raises(ValueError, match="did you mean threads"):
        create_app({"data_dir": tmp_path, "thread": 4})
    assert not (tmp_path / "jonot.sqlite3").exists()  # refused before opening anything


def test_an_unknown_environment_variable_is_one_warning_with_the_nearest_name(caplog):
    with caplog.at_level(logging.WARNING, logger="jonot_local.settings"):
        s = load(JONOT_THREAD="5", JONOT_CLOUDURL="https://x", JONOT_ZZZ="1",
                 JONOT_THREADS="50")
    assert s.threads == 50
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "unknown environment variable JONOT_CLOUDURL ignored (did you mean JONOT_CLOUD_URL?)",
        "unknown environment variable JONOT_THREAD ignored (did you mean JONOT_THREADS?)",
        "unknown environment variable JONOT_ZZZ ignored",
    ]


def test_the_cli_warns_of_an_unknown_variable_in_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "JONOT_BACKUP_KEPE": "3"}
    proc = subprocess.run([sys.executable, "-m", "jonot_local", "settings", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "unknown environment variable JONOT_BACKUP_KEPE ignored "
        "(did you mean JONOT_BACKUP_KEEP?)"]


def test_spec_environment_variables_are_settings():
    names = {env for env, _, _ in Settings.describe()}
    assert {"JONOT_DATA_DIR", "JONOT_PRINTER", "JONOT_CLOUD_URL", "JONOT_CLOUD_TOKEN"} <= names


def test_every_setting_has_a_help_line_and_a_sound_range():
    for f in fields(Settings):
        assert f.metadata["help"].strip().endswith("."), f.name
        low, high = f.metadata.get("min"), f.metadata.get("max")
        default = getattr(Settings.load(environ={}), f.name)
        if low is not None:
            assert default >= low, f.name
        if high is not None:
            assert default <= high, f.name


def test_a_secret_is_not_shown_in_listings():
    s = load(JONOT_CLOUD_TOKEN="very-secret-token")
    assert s.cloud_token == "very-secret-token"
    assert s.shown("cloud_token") == "(set)" and load().shown("cloud_token") == ""


def test_environment_variables_are_read_in_settings_alone():
    """No other module reads os.environ or names a JONOT_* variable as click's envvar."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ|os\.getenv|envvar=", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_jonot_data_dir_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setenv("JONOT_DATA_DIR", str(tmp_path / "env"))
    assert Settings.load().data_dir == tmp_path / "env"
    assert Settings.load(environ={}).data_dir != tmp_path / "env"  # only via Settings.load


def test_the_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, (
        "README settings table is stale: run python -m jonot_local.settings --write README.md")
    for env, default, _ in Settings.describe():
        assert f"| `{env}` | {default} |" in readme


def test_the_table_writer_refreshes_only_its_block(tmp_path):
    start, end = settings_module.README_START, settings_module.README_END
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\n{start}\nold\n{end}\n\n## Next\n")
    assert settings_module.main(["--write", str(path)]) == 0
    assert path.read_text() == f"# Title\n\n{start}\n{markdown_table()}\n{end}\n\n## Next\n"
    assert env_name("printer") == "JONOT_PRINTER"


@pytest.mark.parametrize("env, needle", [
    ({"JONOT_THREADS": "8", "JONOT_STREAM_RESERVE": "8"}, "JONOT_STREAM_RESERVE (8)"),
    ({"JONOT_DB_POOL_SIZE": "0"}, "JONOT_DB_POOL_SIZE: 0 is out of range"),
])
def test_the_cli_refuses_bad_settings_in_one_line(tmp_path, env, needle):
    from click.testing import CliRunner

    from jonot_local.cli import main as cli

    result = CliRunner().invoke(cli, ["settings", "--data-dir", str(tmp_path)], env=env)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("jonot-local: error: ") and needle in lines[0]
