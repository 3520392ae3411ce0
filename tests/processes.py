"""Process helpers for tests that start child processes (XGBoost workers, servers)."""

from __future__ import annotations

import os


def spawned_children() -> set[int]:
    """Live or unreaped children of this process, except multiprocessing's resource tracker."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if ppid == me and b"resource_tracker" not in cmd:
            found.add(int(entry))
    return found
