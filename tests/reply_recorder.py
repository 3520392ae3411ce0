"""The shipped ClientApp with a Flower mod that writes down what every reply carries (tests only).

tests/test_deployment.py copies this module into a Flower App beside a copy of the shipped
``pyproject.toml`` whose ``clientapp`` is ``reply_recorder:client_app``; each SuperNode's
ClientApp then appends one JSON line per message to ``$CONSORTIA_TEST_REPLY_LOG/<node>.jsonl``:
the request's and the reply's records, with array shapes and metric list lengths, no values.
The mod is the only one, so it sees exactly the reply the node sends to the SuperLink.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from consortia.federation.client import HANDLERS, build_client_app

LOG_ENV = "CONSORTIA_TEST_REPLY_LOG"


def describe(content: RecordDict) -> dict[str, dict[str, Any]]:
    """Each record's kind and size: array shapes, metric list lengths (None: a number), config keys."""
    records: dict[str, dict[str, Any]] = {}
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            records[name] = {
                "kind": "array",
                "shapes": [list(array.shape) for array in record.values()],
                "names": list(record.keys()),
            }
        elif isinstance(record, MetricRecord):
            lengths = {k: len(v) if isinstance(v, list) else None for k, v in record.items()}
            records[name] = {"kind": "metric", "lengths": lengths}
        elif isinstance(record, ConfigRecord):
            records[name] = {"kind": "config", "keys": sorted(record)}
        else:  # pragma: no cover - RecordDict holds only these three
            records[name] = {"kind": type(record).__name__}
    return records


def record_reply(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    reply = call_next(message, context)
    folder = os.environ.get(LOG_ENV)
    if folder:
        node = Path(str(context.node_config.get("data-path", "node"))).stem
        entry = {
            "node": node,
            "type": message.metadata.message_type,
            "request": describe(message.content),
            "reply": describe(reply.content) if reply.has_content() else None,
        }
        with open(Path(folder) / f"{node}.jsonl", "a") as log:  # one line per ClientApp process
            log.write(json.dumps(entry) + "\n")
    return reply


client_app = build_client_app(mods={name: [record_reply] for name in HANDLERS})
