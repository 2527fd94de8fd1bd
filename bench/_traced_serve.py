"""``jonot-local serve`` under ``tracemalloc``, for ``bench/memsoak.py --trace``.

A thread watches ``$JONOT_BENCH_SNAP_DIR``: for each ``<name>.req`` it writes
the process's snapshot to ``<name>.snap`` and removes the request.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _watch(snap_dir: Path) -> None:
    while True:
        for req in sorted(snap_dir.glob("*.req")):
            out = req.with_suffix(".snap")
            tracemalloc.take_snapshot().dump(str(out) + ".tmp")
            os.replace(str(out) + ".tmp", out)
            req.unlink()
        time.sleep(0.2)


def main() -> None:
    tracemalloc.start(12)
    threading.Thread(target=_watch, args=(Path(os.environ["JONOT_BENCH_SNAP_DIR"]),),
                     daemon=True).start()
    from jonot_local.cli import main as cli_main

    sys.argv = ["jonot-local", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
