"""Where the package's bundled assets and the per-machine data directory live.

The repository keeps ``web/`` and ``displays/`` beside the package; installed,
they are the sub-packages ``jonot_local.web`` and ``jonot_local.displays``.
Every other module asks this one for those paths.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs

APP_NAME = "jonot-local"


def _package_dir(name: str) -> Path:
    """The directory of a bundled sub-package, whether installed or in a checkout."""
    try:
        found = resources.files(f"jonot_local.{name}")
        path = Path(str(found))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / name


def web_dir() -> Path:
    """The ``web/`` folder: htmx templates and static files."""
    return _package_dir("web")


def displays_dir() -> Path:
    """The ``displays/`` folder: TV display pages and their assets."""
    return _package_dir("displays")


def default_data_dir() -> Path:
    """The platform's user data dir (``JONOT_DATA_DIR`` is read by ``Settings`` alone)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600 from the start)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
