"""The institution's side of the secure sums: what it adds to the consortium's totals.

Under the secured protocol (``privacy.aggregation`` other than ``plain``) a node replies to the
summary query with a layout only (``consortia.privacy.secure_sum.layout_summary``), keeps its
fine-tuned models' score histograms in its own state instead of sending them, and hands either to
a SecAgg+ round when the server asks for the sum (``secure-sum`` = ``summary`` | ``histograms``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context

from consortia.data.institutions import Federation, InstitutionData
from consortia.errors import ConfigError
from consortia.privacy.secure_sum import (
    HISTOGRAM_VALUE_BITS,
    SummaryLayout,
    histogram_integers,
    summary_integers,
    to_limbs,
)
from consortia.verticals import Vertical
from consortia.verticals.base import TrainScores

#: the node-state record holding this node's histograms until the server asks for their sum
HISTOGRAMS_STATE = "secure.histograms"


def secure_sum_vector(
    kind: str, request: ConfigRecord, context: Context, federation: Federation, institution: InstitutionData
) -> np.ndarray:
    """This institution's addend (as limbs, see ``consortia.privacy.secure_sum``) for ``kind``."""
    bits = int(request["limb-bits"])  # type: ignore[arg-type]
    if kind == "summary":
        layout = SummaryLayout.from_json(str(request["layout"]))
        return to_limbs(summary_integers(institution.train, layout), bits)
    if kind == "histograms":
        if HISTOGRAMS_STATE not in context.state.array_records:
            raise ConfigError("secure sum of histograms asked before this institution evaluated the final model")
        integers = context.state.array_records[HISTOGRAMS_STATE]["integers"].numpy()
        return to_limbs(integers, bits, HISTOGRAM_VALUE_BITS)
    raise ConfigError(f"unknown secure sum '{kind}'")


def histogram_names(vertical: Vertical) -> list[str]:
    """The metric columns every institution's secure histogram carries (the vertical's)."""
    return list(vertical.metric_columns)


def keep_histograms(
    context: Context,
    vertical: Vertical,
    institution: InstitutionData,
    y_test: np.ndarray,
    test_scores: Sequence[np.ndarray],
    train: Sequence[TrainScores | None],
) -> None:
    """Store the final models' dense histograms (test, then train for verticals that tune on it)."""
    names = histogram_names(vertical)
    missing = [c for c in names if c not in institution.test.columns]
    if missing:
        raise ConfigError(f"{institution.name}: the secure histograms need column(s) {missing} in the test rows")
    columns = {c: institution.test[c].to_numpy(dtype=np.float64) for c in names}
    parts = [histogram_integers(y_test, p, columns, names) for p in test_scores]
    if vertical.tunes_on_train:
        for scores in train:
            if scores is None:
                raise ConfigError(f"{institution.name}: training scores missing for the secure histograms")
            parts.append(histogram_integers(scores[0], scores[1], {}, []))
    integers = np.asarray([v for part in parts for v in part], dtype=np.int64)
    context.state.array_records[HISTOGRAMS_STATE] = ArrayRecord({"integers": Array(integers)})
