"""Running an experiment for the demo: live round callbacks, stopping, and a result cache.

Kept free of Streamlit so it can be tested on its own; the pages supply the callbacks.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consortia.config import ExperimentConfig
    from consortia.runs.results import RoundRecord, RunResult

# One federation at a time per process: the in-process engine sets Flower's process-wide task
# identity, so two sessions must not run side by side.
_RUN_LOCK = threading.Lock()


class RunStopped(Exception):
    """The user stopped a run; carries how far it got."""

    def __init__(self, rounds_done: int, rounds_total: int) -> None:
        self.rounds_done = rounds_done
        self.rounds_total = rounds_total
        super().__init__(f"stopped after {rounds_done} of {rounds_total} rounds")


def run_live(
    config: ExperimentConfig,
    on_round: Callable[[RoundRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunResult:
    """``run_experiment`` with a per-round callback; raises ``RunStopped`` when asked to stop.

    ``should_stop`` is polled after every round (and while waiting for another session's run).
    """
    from consortia import run_experiment

    quiet_flower()

    def hook(record: RoundRecord) -> None:
        if on_round is not None:
            on_round(record)
        if should_stop is not None and should_stop():
            raise RunStopped(record.round, config.rounds)

    while not _RUN_LOCK.acquire(timeout=0.25):
        if should_stop is not None and should_stop():
            raise RunStopped(0, config.rounds)
    try:
        return run_experiment(config, on_round=hook)
    finally:
        _RUN_LOCK.release()


def quiet_flower() -> None:
    """Flower logs every round at INFO; the demo shows rounds itself."""
    logger = logging.getLogger("flwr")
    logger.setLevel(logging.WARNING)
    for handler in logger.handlers:
        handler.setLevel(logging.WARNING)


class ResultStore:
    """Finished runs by ``ExperimentConfig.fingerprint()``, least recently used dropped first.

    Shared by all sessions of one app process (the pages hold it with ``st.cache_resource``);
    a stopped or failed run is never stored.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, RunResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, fingerprint: str) -> RunResult | None:
        with self._lock:
            result = self._items.get(fingerprint)
            if result is not None:
                self._items.move_to_end(fingerprint)
            return result

    def put(self, fingerprint: str, result: RunResult) -> None:
        with self._lock:
            self._items[fingerprint] = result
            self._items.move_to_end(fingerprint)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __contains__(self, fingerprint: object) -> bool:
        with self._lock:
            return fingerprint in self._items

    def __len__(self) -> int:
        return len(self._items)
