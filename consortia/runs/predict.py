"""Score new rows with a run's global model, through the same mapping, validation and preprocessing.

The model is the newest checkpoint of the run folder (the global model after the last round)
together with the preprocessor the institutions agreed on. New rows go through the run's own
mapping and the vertical's schema checks; a file that lacks a column the model uses, or whose
values the schema rejects, is refused with the file, the column and the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from consortia.errors import ConfigError, DataValidationError
from consortia.learners import make_learner
from consortia.runs.folder import RunFolder
from consortia.verticals import get_vertical


def predict_file(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    on_note: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Scores for every row of ``data``: the file's own columns plus ``score`` (P(positive)).

    ``out`` is checked before anything is scored: it must be a file in an existing folder and
    neither ``data``, a training file of the run, nor anything inside the run folder.
    ``on_note`` hears what was worked around (a damaged checkpoint skipped, a non-UTF-8 file).
    """
    from consortia.data.loaders import check_output_file, load_file, read_table
    from consortia.data.sources import mapping_of

    tell = on_note or (lambda message: None)
    folder = RunFolder(run_dir)
    config = folder.read_config()
    if out is not None:
        check_output_file(out, "--out", [data, *config.data.files], example="scores.csv")
        if folder.path.resolve() in Path(out).resolve().parents:
            raise ConfigError(f"--out {out} is inside the run folder {folder.path}; write the scores elsewhere")
    if config.data.protocol == "flamby":
        raise ConfigError("runs with --protocol flamby normalise per centre and cannot score new rows")
    checkpoint = folder.model_checkpoint()
    if checkpoint is None:
        raise ConfigError(f"{folder.path} has no readable checkpoint to predict with")
    for skipped in folder.skipped_checkpoints:
        tell(f"skipped damaged checkpoint {folder.checkpoints / skipped}; scoring with round {checkpoint.round}")
    vertical = get_vertical(config.vertical)
    mapping = mapping_of(config)
    loaded = load_file(
        data, vertical.schema, mapping, target=config.data.target, min_rows=1, require_target=False,
        allow_undeclared=True,
    )  # fmt: skip
    for message in loaded.notes:
        tell(message)
    preprocessor = checkpoint.preprocessor
    needed = list(preprocessor.numeric) + list(preprocessor.categories)
    lacking = [c for c in needed if c not in loaded.frame.columns]
    if lacking:
        raise DataValidationError(
            f"the model needs column(s) {', '.join(lacking)} that this file does not have "
            f"(after the run's mapping); the model's inputs: {', '.join(needed)}",
            source=str(data),
            column=lacking[0],
        )
    for column, vocab in preprocessor.categories.items():
        values = loaded.frame[column]
        unseen = values.notna() & ~values.astype(str).isin(vocab)
        if unseen.any():
            raise DataValidationError(
                f"has categories the model never saw ({', '.join(map(repr, values[unseen].unique()[:3]))}); "
                f"known: {', '.join(vocab)}",
                source=str(data), column=column, rows=list(np.flatnonzero(unseen.to_numpy()) + 1),
            )  # fmt: skip
    learner = make_learner(
        config.model, preprocessor.n_features,
        vertical.model_params(config.model, config.model_params), seed=config.seed, device=config.device,
    )  # fmt: skip
    learner.set_parameters(checkpoint.parameters)
    scores = learner.predict_proba(preprocessor.transform(loaded.frame))
    result = read_table(data).assign(score=scores)
    if out is not None:
        result.to_csv(out, index=False)
    return result
