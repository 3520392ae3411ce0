"""A warm ClientApp process for a SuperNode in ``--isolation process`` mode.

Flower 1.42's SuperNode asks some process to run each message's ClientApp through its Runtime
API. With ``--isolation subprocess`` (the default) it starts a SuperExec that starts a new
``flwr-clientapp`` process per message: Python, torch and Consortia are imported again and the
institution's file is read again, seconds per message. With ``--isolation process`` the SuperNode
leaves that to "a separate independent process"; this is one. It does what SuperExec +
``flwr-clientapp`` do (acquire a task, pull its message, context and FAB, run the ClientApp,
push the reply, the context and the task's status), with Flower's own functions for each step,
but in one long-lived process: the imports, the parsed config, the node's rows and their
preprocessed arrays (Consortia caches them per run) stay warm across messages.

It runs one task at a time (a SuperNode processes one message at a time). A FAB is installed
and its ClientApp loaded once per FAB hash. A FAB whose ClientApp module has the name of a
module loaded from another FAB would get that other module (Python imports a name once), so
such a task is answered with an error asking for a fresh node process; Consortia's own FAB
ships no code (the installed package is the app), so this only concerns other apps.

Run: ``python -m consortia.federation.engines.deployment.worker --runtime-api-address
127.0.0.1:9101 [--root-certificates CA | --insecure] [--parent-pid PID]``; Consortia's
SuperNode launcher (``node.py``) starts it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from logging import ERROR, INFO
from pathlib import Path
from typing import Any

from flwr.app import Message

from consortia.federation.engines.deployment.prompt import Backoff, Wakeup, prompt_object_transfers

#: the longest wait between two asks for a task: while a run is under way, and when idle
HOT_WAIT_S, IDLE_WAIT_S = 0.05, 1.0
#: the same when the node wakes this process for each stored message (the polls are a fallback)
WOKEN_HOT_WAIT_S, WOKEN_IDLE_WAIT_S = 0.5, 1.0
#: a message object the SuperNode is still downloading is asked for again after this, doubling to the cap
OBJECT_RETRY_S, OBJECT_RETRY_CAP_S = 0.05, 0.2


class WarmClientApps:
    """ClientApps by FAB hash, each installed and loaded once."""

    def __init__(self) -> None:
        self.apps: dict[str, Any] = {}
        self.modules: dict[str, str] = {}  # module name -> FAB hash it was loaded for

    def get(self, run: Any, fab: Any) -> Any:
        from flwr.cli.install import install_from_fab
        from flwr.clientapp.utils import get_load_client_app_fn
        from flwr.common.config import get_project_config, get_project_dir

        if fab.hash_str in self.apps:
            return self.apps[fab.hash_str]
        install_from_fab(fab.content, skip_prompt=True)
        app_dir = get_project_dir(run.fab_id, run.fab_version, fab.hash_str)
        ref = get_project_config(app_dir)["tool"]["flwr"]["app"]["components"]["clientapp"]
        module = ref.partition(":")[0]
        owner = self.modules.get(module)
        if owner is not None and owner != fab.hash_str and _module_file_in_another_fab(module, Path(app_dir)):
            raise RuntimeError(
                f"this warm node process already loaded module '{module}' from another app; "
                "restart the SuperNode to run this app"
            )
        app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(
            run.fab_id, run.fab_version, fab.hash_str
        )
        self.apps[fab.hash_str] = app
        self.modules[module] = fab.hash_str
        return app


def _module_file_in_another_fab(module: str, app_dir: Path) -> bool:
    """Whether the loaded ``module`` came from a FAB folder other than ``app_dir``."""
    from flwr.supercore.utils import get_flwr_home

    loaded = sys.modules.get(module)
    path = Path(getattr(loaded, "__file__", "") or "").resolve()
    apps = (get_flwr_home() / "apps").resolve()
    return path.is_relative_to(apps) and not path.is_relative_to(app_dir.resolve())


def run_task(
    address: str,
    token: str,
    insecure: bool,
    certificates: bytes | None,
    apps: WarmClientApps,
    replied: Wakeup | None = None,
) -> None:
    """One task, as ``flwr-clientapp`` runs it (flwr/supernode/runtime/run_clientapp.py), in this process;
    ``replied`` is told as soon as the reply is with the node (which then sends it on at once)."""
    from flwr.app import Error, Message
    from flwr.clientapp.client_app import LoadClientAppError
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore import log
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=insecure,
        root_certificates=certificates,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        ],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    started = time.perf_counter()
    times: dict[str, float] = {}
    message = reply = context = None
    status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
    try:
        heartbeat.start()
        message, context, run, fab = pull_task_input(client)
        times["pull"] = time.perf_counter() - started
        reply = apps.get(run, fab)(message=message, context=context)
        times["app"] = time.perf_counter() - started - times["pull"]
        status, details = SubStatus.COMPLETED, ""
    except Exception as ex:  # the same error reply flwr-clientapp sends
        log(ERROR, "ClientApp raised an exception", exc_info=ex)
        code, reason = ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(ex)}:<'{ex}'>"
        if isinstance(ex, LoadClientAppError):
            code, reason = (
                ErrorCode.LOAD_CLIENT_APP_EXCEPTION,
                "An exception was raised when attempting to load `ClientApp`",
            )
        details = reason
        if message is not None:
            reply = Message(Error(code=code, reason=reason), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
                if replied is not None:
                    replied.notify()
                times["push"] = time.perf_counter() - started - sum(times.values())
        except Exception as ex:  # the task's status still has to be pushed
            log(ERROR, "Failed to push reply message", exc_info=ex)
        push_task_output(client=client, context=context, sub_status=status, details=details)
        if heartbeat.is_running:
            heartbeat.stop()
        client.close()
    total = time.perf_counter() - started
    log(INFO, "ClientApp task %s in %.3f s (%s)", status, total, ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))


def pull_task_input(client: Any) -> tuple[Any, Any, Any, Any]:
    """Flower's ``run_clientapp.pull_task_input``, retrying a missing object after 50 ms, not 1 s.

    The SuperNode hands a task over before it has all of the message's objects from the
    SuperLink; Flower's pull then waits 1 s, 2 s, ... for them (``PULL_INITIAL_BACKOFF``),
    which was most of a round here."""
    from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
    from flwr.proto.node_pb2 import Node
    from flwr.proto.runtime_pb2 import PullAppMessagesRequest, PullTaskInputRequest
    from flwr.supercore.inflatable.inflatable_protobuf_utils import (
        make_confirm_message_received_fn_protobuf,
        make_pull_object_fn_protobuf,
    )
    from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
    from flwr.supercore.task_identity import TaskIdentity

    res = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = res.task_id
    TaskIdentity.run_id = res.run.run_id
    TaskIdentity.node_id = res.context.node_id
    context, run, fab = context_from_proto(res.context), run_from_proto(res.run), fab_from_proto(res.fab)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("No messages received from Runtime API")
    node = Node(node_id=context.node_id)
    tree = pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree,
        make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(client.ConfirmMessageReceived, node, context.run_id),
        return_type=Message,
        initial_backoff=OBJECT_RETRY_S,
        backoff_cap=OBJECT_RETRY_CAP_S,
    )
    message.metadata.__dict__["_message_id"] = tree.object_id  # as Flower does: not part of the content
    return message, context, run, fab


def serve(
    address: str,
    insecure: bool,
    root_certificates: str | None,
    parent_pid: int | None,
    task_fd: int | None = None,
    reply_fd: int | None = None,
) -> None:
    """Ask the SuperNode for ClientApp tasks until it (or this process) goes away.

    With ``task_fd`` the node writes to it when a message is stored: this process asks for the
    task then, and otherwise only every 0.5-1 s (a fallback); ``reply_fd``: told when a reply
    is with the node. Without them it polls the node, from 10 ms up to 50 ms apart while busy."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.app_utils import start_parent_process_monitor
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.tls import validate_and_resolve_root_certificates

    import consortia.federation.client  # noqa: F401 - warm before the first message: torch, pandas, learners

    prompt_object_transfers()  # a message's objects pulled and pushed 8 at a time
    if parent_pid is not None:  # the SuperNode died: so does this (SIGINT -> KeyboardInterrupt)
        start_parent_process_monitor(parent_pid)
    certificates = validate_and_resolve_root_certificates(root_certificates, insecure)
    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=insecure,
        root_certificates=certificates,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    apps = WarmClientApps()
    stored, replied = Wakeup(read_fd=task_fd), (Wakeup(write_fd=reply_fd) if reply_fd is not None else None)
    hot, idle = (WOKEN_HOT_WAIT_S, WOKEN_IDLE_WAIT_S) if task_fd is not None else (HOT_WAIT_S, IDLE_WAIT_S)
    backoff = Backoff(cap=idle, hot_cap=hot)
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    with contextlib.suppress(KeyboardInterrupt), contextlib.closing(client):
        while True:
            response = client.AcquireTask(request)
            if response.HasField("task") and response.token:
                run_task(address, response.token, insecure, certificates, apps, replied)
                backoff.reset()
                continue
            stored.wait(backoff.wait())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A warm ClientApp process for one SuperNode (--isolation process)")
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API, host:port")
    parser.add_argument("--insecure", action="store_true", help="the Runtime API has no TLS (a local node)")
    parser.add_argument("--root-certificates", default=None, help="CA certificate of the Runtime API's TLS")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process exits")
    parser.add_argument("--task-fd", type=int, default=None, help="pipe the node writes to when a message is stored")
    parser.add_argument("--reply-fd", type=int, default=None, help="pipe to tell the node a reply is in")
    args = parser.parse_args(argv)
    serve(args.runtime_api_address, args.insecure, args.root_certificates, args.parent_pid, args.task_fd, args.reply_fd)


if __name__ == "__main__":
    main()
