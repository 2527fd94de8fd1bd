"""The sync bench parts run end to end at tiny sizes (SQLite cloud) and print their figures.

Speed is not asserted (``python -m bench sync`` reports it); this checks that the
catch-up and cloud-streams parts start their processes, measure and report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import functools, sys
import bench.__main__ as cli
from bench import cloud_streams, sync_catchup
sync_catchup.run = functools.partial(sync_catchup.run, changes=600, backends=("sqlite",))
cloud_streams.run = functools.partial(cloud_streams.run, streams=24, backends=("sqlite",))
cli.cpu_busy_share = lambda seconds=1.0, _f=cli.cpu_busy_share: _f(0.05)
cli.fsync_commits_per_s = functools.partial(cli.fsync_commits_per_s, count=20)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("part", ["sync-catchup", "cloud-streams"])
def test_sync_bench_part_runs_and_reports(part: str, tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "-c", SMOKE, part, "--quick", "--json",
                           str(figures_file)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(figures_file.read_text())[part]["sqlite"]
    if part == "sync-catchup":
        assert figures["entries"] >= 600 and figures["drain_s"] > 0
        assert figures["tickets_office"] == figures["tickets_cloud"]
        assert figures["dead_letters"] == 0 and figures["call_next_busy"]["calls"] > 0
    else:
        assert figures["connected"] == 24 and figures["from_call"]["missing"] == 0
        assert figures["held"]["threads"] > 24
