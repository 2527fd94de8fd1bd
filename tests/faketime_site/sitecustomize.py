"""Put on ``PYTHONPATH`` of a process run under libfaketime with the monotonic clock left
alone (tests/test_sync_faults.py): that libfaketime release fails ``time.sleep`` with
EINVAL, so ``sleep`` becomes a timed wait on an event (the same pause)."""

import os
import threading
import time

if "faketime" in os.environ.get("LD_PRELOAD", "") and os.environ.get(
        "FAKETIME_DONT_FAKE_MONOTONIC") == "1":

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        threading.Event().wait(seconds)

    time.sleep = _sleep
