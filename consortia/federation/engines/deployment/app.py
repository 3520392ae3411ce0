"""The ClientApp and ServerApp as module-level objects, for Flower's deployment runtime.

``flwr run`` loads them by name (see ``[tool.flwr.app.components]`` in pyproject.toml). They
are the very apps every other engine runs; the experiment comes from ``context.run_config``
and each SuperNode finds its data through its node config's ``data-path``. The ServerApp's
Grid pulls replies with a backoff (``prompt.PromptGrid``) instead of Flower's fixed 3 s.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from consortia.federation.client import build_client_app
from consortia.federation.engines.deployment.prompt import PromptGrid, prompt_object_transfers
from consortia.federation.server import ServerHooks, build_server_app

prompt_object_transfers()  # the ServerApp process: 8 object requests at a time, a miss retried after 50 ms

#: a deployed server only sees metrics and score histograms, never scores; it asks every node for a
#: local-only baseline, which a node trains only if its node config says ``local-baseline=true``
_server = build_server_app(hooks=ServerHooks(report_scores=False, node_timeout_s=300.0, local_baselines=True))
server_app = ServerApp()
client_app = build_client_app()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    _server(PromptGrid(grid), context)
