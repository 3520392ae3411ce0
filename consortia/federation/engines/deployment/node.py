"""Consortia's SuperNode launcher: Flower's ``flower-supernode``, warm and prompt.

``python -m consortia.federation.engines.deployment.node [flower-supernode options]`` runs
Flower's own SuperNode (same options, same Fleet protocol, TLS and node authentication) with
two differences, both for speed and both visible here:

* ``--isolation process``: instead of a new ``flwr-clientapp`` process per message, one warm
  ClientApp process (``worker.py``) serves this node's messages. It is started here, in this
  process's group (a signal to the node's group reaches it), and exits when this process does;
* the node's idle poll (a fixed 3 s sleep in Flower 1.42) becomes a backoff from 10 ms up to
  the same 3 s (``prompt.AdaptiveSleep``), so a message is picked up about as soon as it exists;
* node and worker wake each other through two pipes instead of polling each other: the node
  says "a message is stored" (``prompt.announce_stored_messages``), the worker says "my reply
  is in". Each side still polls, rarely, as a fallback.

The plain ``flower-supernode`` command still works with every Consortia app; it is only slower
(seconds per message). ``--flower-poll`` keeps Flower's 3 s poll.
"""

from __future__ import annotations

import subprocess
import sys

from consortia.federation.engines.deployment.prompt import (
    Wakeup,
    announce_stored_messages,
    install_adaptive_sleep,
    prompt_object_transfers,
)

#: a SuperNode's Runtime API address, as ``flower-supernode`` builds it from --host/--port
DEFAULT_HOST, DEFAULT_PORT = "0.0.0.0", "9094"


def _option(argv: list[str], name: str, default: str | None = None) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def worker_command(argv: list[str], parent_pid: int, wake_fds: tuple[int, int] | None = None) -> list[str]:
    """The warm ClientApp process for the SuperNode that ``argv`` starts (same Runtime API TLS);
    ``wake_fds``: the pipe ends it reads ("a message is stored") and writes ("my reply is in")."""
    host = _option(argv, "--host", DEFAULT_HOST) or DEFAULT_HOST
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    host = f"[{host}]" if ":" in host else host
    command = [sys.executable, "-m", "consortia.federation.engines.deployment.worker",
               "--runtime-api-address", f"{host}:{_option(argv, '--port', DEFAULT_PORT)}",
               "--parent-pid", str(parent_pid)]  # fmt: skip
    if wake_fds is not None:
        command += ["--task-fd", str(wake_fds[0]), "--reply-fd", str(wake_fds[1])]
    ca = _option(argv, "--ssl-ca-certfile")
    return command + (["--root-certificates", ca] if ca else ["--insecure"])


def main(argv: list[str] | None = None) -> None:
    import os

    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    args = list(sys.argv[1:] if argv is None else argv)
    prompt = "--flower-poll" not in args
    args = [a for a in args if a != "--flower-poll"]
    if "--isolation" in args:
        raise SystemExit("node.py sets --isolation process itself (it starts the node's warm ClientApp process)")
    args += ["--isolation", "process"]
    wake_fds: tuple[int, int] | None = None
    if prompt:
        task_read, task_write = os.pipe()  # node -> worker: a message is stored
        reply_read, reply_write = os.pipe()  # worker -> node: its reply is in
        replied = Wakeup(read_fd=reply_read)
        installed = (
            install_adaptive_sleep(start_client_internal, reply=replied)
            and announce_stored_messages(start_client_internal, Wakeup(write_fd=task_write), replied)
            and prompt_object_transfers()
        )
        if installed:
            wake_fds = (task_read, reply_write)
        else:
            print("consortia node: this Flower version's SuperNode loop is not the one expected; "
                  "polling as Flower does (3 s when idle)", file=sys.stderr)  # fmt: skip
    worker = subprocess.Popen(  # same session and group as this node
        worker_command(args, os.getpid(), wake_fds), pass_fds=wake_fds or ()
    )
    sys.argv = ["flower-supernode", *args]
    try:
        flower_supernode()
    finally:
        worker.terminate()


if __name__ == "__main__":
    main()
