"""The installer files: systemd unit, desktop entry, install script, Windows service and setup."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

INSTALLER = Path(__file__).resolve().parent.parent / "installer"
UNIT = INSTALLER / "jonot-local.service"


def unit_options() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_has_a_dedicated_user_a_private_state_dir_and_restarts() -> None:
    opts = unit_options()
    assert opts["User"] == ["jonot-local"] and opts["Group"] == ["jonot-local"]
    assert opts["StateDirectory"] == ["jonot-local"]
    assert opts["StateDirectoryMode"] == ["0700"]
    assert "JONOT_DATA_DIR=/var/lib/jonot-local" in opts["Environment"]
    assert opts["Restart"] == ["on-failure"]
    assert opts["ExecStart"][0].startswith("/opt/jonot-local/bin/jonot-local serve")
    assert opts["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point it at a stand-in of the installed program.
    program = tmp_path / "opt" / "bin" / "jonot-local"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    unit = tmp_path / "jonot-local.service"
    unit.write_text(UNIT.read_text().replace("/opt/jonot-local/bin/jonot-local", str(program)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "jonot-local.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_desk_desktop_entry() -> None:
    entry = INSTALLER / "linux" / "jonot-local-desk.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(entry)
    section = parser["Desktop Entry"]
    assert section["Type"] == "Application" and section["Exec"].endswith("jonot-local desk")
    assert section["Terminal"] == "false"
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True,
                                text=True)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_install_script_is_valid_shell() -> None:
    script = INSTALLER / "linux" / "install.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout


def test_install_script_refuses_without_root(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("running as root")
    result = subprocess.run(["sh", str(INSTALLER / "linux" / "install.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "root" in result.stderr


def test_winsw_service_config() -> None:
    root = ET.parse(INSTALLER / "windows" / "jonot-local-service.xml").getroot()
    assert root.tag == "service"
    assert root.findtext("executable") == r"%BASE%\jonot-local.exe"
    assert root.findtext("arguments").startswith("serve ")
    assert root.findtext("startmode") == "Automatic"
    assert r"%ProgramData%\Jonot Local" in root.findtext("arguments")
    assert [e.get("action") for e in root.findall("onfailure")] == ["restart", "restart"]


def test_inno_setup_script_installs_service_menu_firewall_and_keeps_data() -> None:
    iss = (INSTALLER / "windows" / "jonot-local.iss").read_text()
    sections = set(re.findall(r"^\[(\w+)\]", iss, flags=re.M))
    assert {"Setup", "Files", "Dirs", "Icons", "Run", "UninstallRun", "Code"} <= sections
    assert 'Parameters: "desk"' in iss and "http://localhost:{#Port}/display" in iss
    assert re.search(r"firewall add rule .*protocol=TCP localport=\{#Port\} "
                     r"profile=private,domain", iss)
    assert re.search(r'Name: "\{commonappdata\}\\Jonot Local"; Flags: uninsneveruninstall', iss)
    assert 'Parameters: "install"' in iss and 'Parameters: "uninstall"' in iss
    for source in re.findall(r'^Source: "([^"*]+)"', iss, flags=re.M):
        assert (INSTALLER / "windows" / source).exists() or source == "WinSW-x64.exe", source


def test_pyinstaller_spec_collects_the_package_data() -> None:
    spec = (INSTALLER / "windows" / "jonot-local.spec").read_text()
    compile(spec, "jonot-local.spec", "exec")
    for needed in ('"web"', '"displays"', '"sync"', "translations", 'name="jonot-local"',
                   'collect_data_files("escpos")'):
        assert needed in spec
