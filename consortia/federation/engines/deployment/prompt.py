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

import contextlib
import os
import select
import time
from collections.abc import Callable, Iterable
from logging import INFO
from types import ModuleType
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore import log

from consortia.federation.grids import DelegatingGrid

#: the tag of the timing lines the ServerApp (one per exchange) and each SuperNode (one per message) log
EXCHANGE_LOG, NODE_LOG = "consortia exchange", "consortia node"
#: first retry after this many seconds; each later one twice as late
FIRST_WAIT_S = 0.005
#: the ServerApp's longest wait between two pulls for replies
GRID_MAX_WAIT_S = 0.1
#: a message object not there yet is asked for again after this (doubling, as Flower does)
OBJECT_RETRY_S = 0.05  # (10 ms measured no better: the retries of 3 nodes x 8 threads crowd the SuperLink)
#: ... and at most this long after the previous ask (the object is being uploaded right now)
OBJECT_RETRY_CAP_S = 0.2
#: message objects (one HTTP request each) moved this many at a time
OBJECT_CONCURRENCY = 8
#: a run is "under way" this long after the last message: polls stay at most ``hot_cap`` apart
HOT_S = 30.0
#: a SuperNode's longest wait between two pulls while a run is under way (then Flower's 3 s)
NODE_HOT_WAIT_S = 0.1
#: a SuperNode waiting for its warm ClientApp's reply looks at its state at least this often
#: (the worker wakes it at once; this is the fallback)
BUSY_WAIT_S = 0.05


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
        sent = list(messages)
        started = time.monotonic()
        waiting = set(self.inner.push_messages(sent))
        pushed = time.monotonic() - started
        end = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff(self.first, cap=self.cap)
        replies: list[Message] = []
        polls, arrived = 0, []
        while waiting:
            pulled = list(self.inner.pull_messages(waiting))
            polls += 1
            replies += pulled
            arrived += [time.monotonic() - started] * len(pulled)
            waiting -= {m.metadata.reply_to_message_id for m in pulled}
            if not waiting or (end is not None and time.monotonic() >= end):
                break
            if pulled:  # replies are coming in: the others are probably close
                backoff.reset()
            left = None if end is None else max(0.0, end - time.monotonic())
            backoff.sleep(left)
        if sent:  # one line per exchange: where its time went (benchmarks/deployment.py --logs reads it)
            times = " ".join(f"{t:.3f}" for t in arrived)
            kind = sent[0].metadata.message_type
            log(INFO, "%s %s: %d pushed in %.3f s, replies in at %s s (%d polls)",
                EXCHANGE_LOG, kind, len(sent), pushed, times, polls)  # fmt: skip
        return replies


class Wakeup:
    """One direction of a pipe between a SuperNode and its warm ClientApp process: "look now".

    ``notify`` writes a byte (never blocks: a full pipe already says it); ``wait`` returns as soon
    as one is there, or after ``timeout`` seconds, and empties the pipe. Polls stay as a fallback:
    a lost byte costs one poll interval, never a message."""

    def __init__(self, read_fd: int | None = None, write_fd: int | None = None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        #: when ``wait`` last returned woken
        self.woken_at: float | None = None
        for fd in (read_fd, write_fd):
            if fd is not None:
                os.set_blocking(fd, False)

    def notify(self) -> None:
        if self.write_fd is not None:
            with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
                os.write(self.write_fd, b"!")

    def wait(self, timeout: float) -> bool:
        """True when woken, False when ``timeout`` passed (or there is nothing to wait on)."""
        if self.read_fd is None:
            time.sleep(timeout)
            return False
        try:
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
            return False
        if not ready:
            return False
        self.woken_at = time.monotonic()
        try:
            while os.read(self.read_fd, 4096):
                pass
            self.read_fd = None  # end of file: the other side is gone; from now on, plain sleeps
        except (BlockingIOError, InterruptedError):
            pass  # emptied
        return True


class AdaptiveSleep:
    """The ``time`` module as a SuperNode's loop sees it, with its sleeps shortened.

    In ``start_client_internal`` Flower sleeps 3 s after a pull that found no message (idle)
    and 0.5 s while it waits for its own ClientApp's reply (busy). Idle sleeps become a backoff
    from ``first`` up to ``hot_cap`` while a run is under way (a message in the last ``HOT_S``),
    then up to Flower's own 3 s. Busy sleeps mark activity and end as soon as the warm ClientApp
    process says its reply is in (``reply``), at most ``busy_cap`` later (a poll, the fallback)."""

    #: a sleep this long or longer is Flower's idle poll
    IDLE_S = 1.0

    def __init__(
        self,
        first: float = 0.01,
        hot_cap: float = NODE_HOT_WAIT_S,
        reply: Wakeup | None = None,
        busy_cap: float = BUSY_WAIT_S,
    ) -> None:
        self.first = first
        self.idle = Backoff(first, cap=3.0, hot_cap=hot_cap)
        self.reply = reply
        self.busy_cap = busy_cap

    def sleep(self, seconds: float) -> None:
        if seconds >= self.IDLE_S:
            time.sleep(self.idle.wait(cap=seconds))
        elif self.reply is not None:
            self.idle.reset()
            self.reply.wait(min(seconds, self.busy_cap))
        else:
            self.idle.reset()
            time.sleep(min(seconds, self.first))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def prompt_object_transfers(
    first: float = OBJECT_RETRY_S, cap: float = OBJECT_RETRY_CAP_S, concurrency: int = OBJECT_CONCURRENCY
) -> bool:
    """Message objects moved ``concurrency`` at a time, and one not there yet asked for again after
    ``first`` seconds (Flower: 1 s), doubling up to ``cap`` (Flower: 10 s). In this process only.

    Every array and record of a message is an object of its own, one HTTP request each, and
    Flower 1.42 moves at most 2 at a time (``FLWR_PRIVATE_MAX_CONCURRENT_OBJ_*``, and never more
    than the CPU count: ``get_num_workers``), so a 10-object reply took 5 round trips; the
    requests wait on the network and the other side, not on this CPU. A message is also listed
    before its objects have all arrived (a ServerApp's reply, a SuperNode's download), and
    ``pull_objects`` then waited 1 s, 2 s, ... (``PULL_INITIAL_BACKOFF``) for the rest.
    This changes those keyword defaults and the worker count. Returns False, changing nothing,
    if the functions do not have them (another Flower version)."""
    from flwr.supercore.inflatable import inflatable_utils as utils

    pull = getattr(utils.pull_objects, "__kwdefaults__", None) or {}
    tree = getattr(utils.pull_and_inflate_object_from_tree, "__kwdefaults__", None) or {}
    pushes = [
        getattr(f, "__kwdefaults__", None) or {} for f in (utils.push_objects, utils.push_object_contents_from_iterable)
    ]
    workers = getattr(utils, "get_num_workers", None)
    if not (
        {"initial_backoff", "backoff_cap", "max_concurrent_pulls"} <= pull.keys()
        and "max_concurrent_pulls" in tree
        and all("max_concurrent_pushes" in d for d in pushes)
        and callable(workers)
    ):
        return False
    pull["initial_backoff"] = min(first, pull["initial_backoff"])
    pull["backoff_cap"] = min(cap, pull["backoff_cap"])
    for defaults, key in [(pull, "max_concurrent_pulls"), (tree, "max_concurrent_pulls")] + [
        (d, "max_concurrent_pushes") for d in pushes
    ]:
        defaults[key] = max(concurrency, defaults[key])
    if getattr(workers, "__wrapped__", None) is None:

        def io_workers(max_concurrent: int) -> int:
            """Threads for object requests: they wait on I/O, so not capped at the CPU count."""
            return max(1, max_concurrent)

        io_workers.__wrapped__ = workers  # type: ignore[attr-defined]
        utils.get_num_workers = io_workers
    return True


def install_adaptive_sleep(module: ModuleType, first: float = 0.01, reply: Wakeup | None = None) -> bool:
    """Give ``module`` (Flower's SuperNode loop) an ``AdaptiveSleep`` for its ``time``.

    Returns False, changing nothing, when the module does not use ``time`` as 1.42 does."""
    if getattr(module, "time", None) is not time:
        return False
    module.time = AdaptiveSleep(first, reply=reply)  # type: ignore[attr-defined]
    return True


def announce_stored_messages(module: ModuleType, task: Wakeup, reply: Wakeup | None = None) -> bool:
    """Wake the warm ClientApp process the moment the SuperNode loop has stored a message.

    Flower 1.42's loop calls its module's ``_pull_and_store_message``, which returns the run id
    once a message and all its objects are in the node's store (its task exists from before the
    download). Wrapping that one call tells the worker "acquire now", so it neither polls nor
    pulls objects that are still downloading. ``_push_messages`` (wait for the reply, send it) is
    wrapped for its timing only: one log line per message, download / reply / upload seconds
    (``reply``: the pipe the worker wakes the node through, which notes when). Returns False,
    changing nothing, when the module has no such functions."""
    pull: Callable[..., int | None] | None = getattr(module, "_pull_and_store_message", None)
    push: Callable[..., None] | None = getattr(module, "_push_messages", None)
    if pull is None or push is None or getattr(pull, "__wrapped__", None) is not None:
        return False
    stored: dict[str, float] = {}

    def pull_and_announce(*args: Any, **kwargs: Any) -> int | None:
        started = time.monotonic()
        run_id = pull(*args, **kwargs)
        if run_id is not None:
            if reply is not None:  # a byte left from the last reply must not end this reply's wait
                reply.wait(0.0)
                reply.woken_at = None
            task.notify()
            stored.update(at=time.monotonic(), download=time.monotonic() - started)
        return run_id

    def push_and_time(*args: Any, **kwargs: Any) -> None:
        push(*args, **kwargs)
        if stored:
            done, at = time.monotonic(), stored["at"]
            replied = reply.woken_at if reply is not None and reply.woken_at is not None else None
            ready = f"{replied - at:.3f}" if replied is not None and replied >= at else "?"
            upload = f"{done - replied:.3f}" if replied is not None and replied >= at else "?"
            log(INFO, "%s: message in %.3f s, reply in %s s later, sent %s s later",
                NODE_LOG, stored["download"], ready, upload)  # fmt: skip
            stored.clear()

    pull_and_announce.__wrapped__ = pull  # type: ignore[attr-defined]
    push_and_time.__wrapped__ = push  # type: ignore[attr-defined]
    module._pull_and_store_message = pull_and_announce  # type: ignore[attr-defined]
    module._push_messages = push_and_time  # type: ignore[attr-defined]
    return True
