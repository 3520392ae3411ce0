"""The ClientApp and ServerApp as module-level objects, for Flower's deployment runtime.

``flwr run`` loads them by name (see ``[tool.flwr.app.components]`` in pyproject.toml). They
are the very apps every other engine runs; the experiment comes from ``context.run_config``
and each SuperNode finds its data through its node config's ``data-path``.
"""

from __future__ import annotations

from consortia.federation.client import build_client_app
from consortia.federation.server import ServerHooks, build_server_app

#: a deployed server only sees metrics, never scores: pooled metrics stay empty there
server_app = build_server_app(hooks=ServerHooks(report_scores=False, node_timeout_s=300.0))
client_app = build_client_app()
