"""What an institution lets leave: its disclosure policy, decided in its own node config.

The server can ask for anything; a node answers only what its policy allows. By default no
per-row data ever leaves (no labels, scores or metric columns of single rows): pooled metrics
come from score histograms (``consortia.evaluation.pooled``) instead. The in-process and Ray
engines set ``disclose-rows`` in the simulated nodes' config only for the exact pooled-metrics
check (``ServerHooks(exact_pooled_metrics=True)``); a deployed SuperNode discloses rows only if
its operator starts it with ``--node-config 'disclose-rows=true'``.

``min-category-count`` (k, default 5) is the fewest rows of one category an institution
reports in its feature summary; rarer categories are merged into one "other" count before the
summary leaves, so a category seen at one patient is never disclosed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: node-config keys a deployment operator sets per SuperNode
DISCLOSE_ROWS = "disclose-rows"
MIN_CATEGORY_COUNT = "min-category-count"
DEFAULT_MIN_CATEGORY_COUNT = 5


@dataclass(frozen=True)
class DisclosurePolicy:
    """One institution's rules for what may leave it."""

    per_row: bool = False
    min_category_count: int = DEFAULT_MIN_CATEGORY_COUNT

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> DisclosurePolicy:
        raw = node_config.get(DISCLOSE_ROWS, False)
        per_row = raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes")
        k = int(node_config.get(MIN_CATEGORY_COUNT, DEFAULT_MIN_CATEGORY_COUNT))
        if k < 1:
            raise ValueError(f"{MIN_CATEGORY_COUNT} must be at least 1 (got {k})")
        return cls(per_row=per_row, min_category_count=k)

    def allows_rows(self, requested: bool) -> bool:
        """Per-row scores leave only if the server asks AND this node allows it."""
        return requested and self.per_row
