"""Prompt polling for a deployment: answers arrive milliseconds after they exist, not seconds.

Flower 1.42's deployment runtime polls with fixed sleeps: the ServerApp's Grid sleeps 3 s
whenever a pull finds a reply missing (``flwr/superlink/grid/http_grid.py``), and a SuperNode
sleeps 3 s whenever its pull finds no message (``flwr/supernode/start_client_internal.py``).
A round is two such exchanges (train, evaluate), so it costs 6-12 s whatever the training.

Both are replaced by an exponential backoff: the first retry after a few milliseconds, each
next one twice as late, up to a cap. While a run is under way (a message in the last
30 s) polls stay at most 0.1 s apart; an idle federation polls as rarely as Flower's own.

* ``PromptGrid`` is ordinary Grid API (``push_messages`` + ``pull_messages``), nothing patched;
* ``AdaptiveSleep`` stands in for the ``time`` module inside that one SuperNode module (the
  only way: the 3 s are a literal there). It is installed only by Consortia's SuperNode
  launcher (``consortia.federation.engines.deployment.node``); if a Flower release moves that
  code, installing it changes nothing and says so, and the node polls as Flower does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from consortia.federation.grids import DelegatingGrid

#: first retry after this many seconds; each later one twice as late
FIRST_WAIT_S = 0.005
#: the ServerApp's longest wait between two pulls for replies
GRID_MAX_WAIT_S = 0.1
#: a message object not there yet is asked for again after this (doubling, as Flower does)
OBJECT_RETRY_S = 0.01
#: a run is "under way" this long after the last message: polls stay at most ``hot_cap`` apart
HOT_S = 30.0
#: a SuperNode's longest wait between two pulls while a run is under way (then Flower's 3 s)
NODE_HOT_WAIT_S = 0.1


class Backoff:
    """Waits of ``first``, 2x, 4x ... seconds; ``reset`` after activity.

    For ``hot_s`` seconds after the last activity the waits stop growing at ``hot_cap`` (a run
    is under way: its next message follows soon), later they grow to ``cap`` (idle)."""

    def __init__(
        self, first: float = FIRST_WAIT_S, cap: float = 1.0, hot_cap: float | None = None, hot_s: float = HOT_S
    ) -> None:
        self.first = first
        self.cap = cap
        self.hot_cap = cap if hot_cap is None else min(hot_cap, cap)
        self.hot_s = hot_s
        self.next = first
        self.active_at = time.monotonic()

    def reset(self) -> None:
        self.next = self.first
        self.active_at = time.monotonic()

    def wait(self, cap: float | None = None) -> float:
        hot = time.monotonic() - self.active_at < self.hot_s
        limit = self.hot_cap if hot else self.cap
        limit = limit if cap is None else min(cap, limit)
        seconds = min(self.next, limit)
        self.next = min(self.next * 2, limit if hot else self.cap)
        return seconds

    def sleep(self, cap: float | None = None) -> None:
        time.sleep(self.wait(cap))


class PromptGrid(DelegatingGrid):
    """``send_and_receive`` that pulls replies with a backoff instead of Flower's fixed 3 s."""

    def __init__(self, grid: Grid, first: float = FIRST_WAIT_S, cap: float = GRID_MAX_WAIT_S) -> None:
        super().__init__(grid)
        self.first = first
        self.cap = cap

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        waiting = set(self.inner.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff(self.first, cap=self.cap)
        replies: list[Message] = []
        while waiting:
            pulled = list(self.inner.pull_messages(waiting))
            replies += pulled
            waiting -= {m.metadata.reply_to_message_id for m in pulled}
            if not waiting or (end is not None and time.monotonic() >= end):
                break
            if pulled:  # replies are coming in: the others are probably close
                backoff.reset()
            left = None if end is None else max(0.0, end - time.monotonic())
            backoff.sleep(left)
        return replies


class AdaptiveSleep:
    """The ``time`` module as a SuperNode's loop sees it, with its sleeps shortened.

    In ``start_client_internal`` Flower sleeps 3 s after a pull that found no message (idle)
    and 0.5 s while it waits for its own ClientApp's reply (busy). Idle sleeps become a backoff
    from ``first`` up to ``hot_cap`` while a run is under way (a message in the last ``HOT_S``),
    then up to Flower's own 3 s; busy sleeps become ``first`` and mark activity."""

    #: a sleep this long or longer is Flower's idle poll
    IDLE_S = 1.0

    def __init__(self, first: float = 0.01, hot_cap: float = NODE_HOT_WAIT_S) -> None:
        self.first = first
        self.idle = Backoff(first, cap=3.0, hot_cap=hot_cap)

    def sleep(self, seconds: float) -> None:
        if seconds >= self.IDLE_S:
            time.sleep(self.idle.wait(cap=seconds))
        else:
            self.idle.reset()
            time.sleep(min(seconds, self.first))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def prompt_object_pulls(first: float = OBJECT_RETRY_S) -> bool:
    """Retry a message object that is not there yet after ``first`` seconds, not Flower's 1 s.

    A message is listed before its objects have all arrived (a ServerApp's reply, a SuperNode's
    download), and Flower's ``pull_objects`` then waits 1 s, 2 s, ... (``PULL_INITIAL_BACKOFF``)
    for the rest: most of a round on loopback. This changes that keyword default, in this
    process only; it doubles as before. Returns False, changing nothing, if the function
    has no such keyword (another Flower version)."""
    from flwr.supercore.inflatable import inflatable_utils

    defaults = getattr(inflatable_utils.pull_objects, "__kwdefaults__", None)
    if not defaults or "initial_backoff" not in defaults:
        return False
    defaults["initial_backoff"] = min(first, defaults["initial_backoff"])
    return True


def install_adaptive_sleep(module: ModuleType, first: float = 0.01) -> bool:
    """Give ``module`` (Flower's SuperNode loop) an ``AdaptiveSleep`` for its ``time``.

    Returns False, changing nothing, when the module does not use ``time`` as 1.42 does."""
    if getattr(module, "time", None) is not time:
        return False
    module.time = AdaptiveSleep(first)  # type: ignore[attr-defined]
    return True
