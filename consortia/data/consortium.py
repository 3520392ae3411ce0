"""The run's institutions from its data source, and the one institution a Flower node serves.

A Flower node finds its own institution through its node config, never through globals:
``partition-id`` (simulation: the i-th institution of the configured data source) or, in a
real deployment, ``data-path`` (the file that this node alone can read). Everything is cached
per run, so nodes in one process validate and split their rows once.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.institutions import (
    Federation,
    InstitutionData,
    RowSource,
    SourceKey,
    files_version,
    split_institution,
)
from consortia.data.partition import partition_frame
from consortia.data.preprocessing import Preprocessor
from consortia.data.sources import load_file_federation, load_node_institution
from consortia.errors import ConfigError


def load_federation(config: ExperimentConfig, vertical: RowSource, fingerprint: str | None = None) -> Federation:
    """The run's institutions from its data source; cached, so nodes in one process share it.

    ``fingerprint``: ``config.fingerprint()`` when the caller already has it (a node computes it
    once per run, not once per message)."""
    fingerprint = config.fingerprint() if fingerprint is None else fingerprint
    return _load_federation_cached(SourceKey(vertical), fingerprint, files_version(config.data.files))


@functools.lru_cache(maxsize=4)
def _load_federation_cached(keyed: SourceKey, fingerprint: str, _files: tuple = ()) -> Federation:
    config = ExperimentConfig.model_validate_json(fingerprint)
    vertical = keyed.source
    if config.data.files:
        schema, institutions = load_file_federation(config, vertical)
        return Federation(schema, institutions)
    schema = vertical.schema
    generated = vertical.generate(config.institutions, config.rows, config.seed)
    # validated once as a whole (pandera costs ~0.15 s a call at any size); each share then checks
    # only its row count and classes (split_institution(validated=True))
    frame = schema.validate(generated, source=f"{vertical.name}'s generated data", require_both_classes=False)
    del generated  # the validated copy replaces it: one frame in memory, not two
    frame = one_chunk(frame)
    parts = partition_frame(
        frame,
        config.partition,
        num_institutions=config.institutions,
        target=schema.target,
        natural_column=schema.institution_column,
        seed=config.seed,
    )
    if len(parts) != config.institutions:
        column = config.partition.column or schema.institution_column
        raise ConfigError(
            f"the natural split by '{column}' gives {len(parts)} institutions "
            f"({', '.join(list(parts)[:6])}), but the run is configured for {config.institutions}; "
            f"set institutions={len(parts)}"
        )
    institutions = {
        name: split_institution(name, part, vertical, schema, config, validated=True) for name, part in parts.items()
    }
    return Federation(schema, institutions)


def one_chunk(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each pyarrow-backed string column in one chunk, values and dtypes unchanged.

    Generated data is built institution by institution, so its string columns arrive as one
    pyarrow chunk per piece; taking rows from a many-chunked column costs time in proportion to
    the whole column (pyarrow), which made partitioning cost institutions x rows (1M rows: 14 ms
    per institution's ``iloc``, 0.3 ms from one chunk).
    """
    combined = {}
    for name in frame.columns:
        values = frame[name].array
        if isinstance(values, pd.arrays.ArrowStringArray):
            chunks = values.__arrow_array__()
            if chunks.num_chunks > 1:
                combined[name] = pd.arrays.ArrowStringArray(chunks.combine_chunks(), dtype=values.dtype)
    return frame.assign(**combined) if combined else frame


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: runs whose arrays stay cached (a long-lived process, the demo, may hold a few runs at once)
MAX_CACHED_RUNS = 4


class RunArrays:
    """Each institution's preprocessed arrays, per run: every institution is transformed once
    per run whatever the federation's size, so memory grows with the data, not with rounds.

    A run is (vertical, config fingerprint, input files, preprocessor, node data path); the
    ``MAX_CACHED_RUNS`` most recently used runs are kept, each with all its institutions.
    """

    def __init__(self, max_runs: int = MAX_CACHED_RUNS) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[tuple, dict[str, Arrays]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, run: tuple, name: str, make: Callable[[], Arrays]) -> Arrays:
        with self._lock:
            institutions = self._runs.get(run)
            if institutions is None:
                institutions = self._runs[run] = {}
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
            self._runs.move_to_end(run)
            if name in institutions:
                self.hits += 1
                return institutions[name]
        arrays = make()  # outside the lock: institutions of one run may transform in parallel
        with self._lock:
            self.misses += 1
            return institutions.setdefault(name, arrays)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self.hits = self.misses = 0


RUN_ARRAYS = RunArrays()


def institution_arrays(
    config: ExperimentConfig,
    vertical: RowSource,
    name: str,
    preprocessor_json: str,
    data_path: str | None = None,
    fingerprint: str | None = None,
) -> Arrays:
    """Preprocessed train/test arrays of one institution, cached per (run, preprocessor).

    Every round sends the same preprocessor, so a node transforms its rows once per run, at any
    number of institutions (``RunArrays``). ``data_path``: a deployed node's own file (its node
    config's ``data-path``). ``fingerprint``: ``config.fingerprint()`` if the caller has it.
    """

    def make(institution: InstitutionData, target: str, preprocessor: Preprocessor) -> Arrays:
        return institution.arrays(preprocessor, target)

    return _cached(config, vertical, name, preprocessor_json, data_path, fingerprint, "", make)


def validation_arrays(
    config: ExperimentConfig,
    vertical: RowSource,
    name: str,
    preprocessor_json: str,
    data_path: str | None = None,
    fingerprint: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The institution's validation rows (``config.selection``), preprocessed and cached as its
    train/test arrays are; empty arrays when the run holds none out."""

    def make(institution: InstitutionData, target: str, preprocessor: Preprocessor) -> Arrays:
        rows = institution.validation
        if rows is None or rows.empty:
            empty = np.empty((0, preprocessor.n_features), dtype=np.float32)
            return empty, np.empty(0, dtype=int), empty, np.empty(0, dtype=int)
        x, y = preprocessor.transform(rows), rows[target].to_numpy(dtype=int)
        return x, y, x[:0], y[:0]

    x_val, y_val, _, _ = _cached(config, vertical, name, preprocessor_json, data_path, fingerprint, "validation", make)
    return x_val, y_val


def _cached(
    config: ExperimentConfig,
    vertical: RowSource,
    name: str,
    preprocessor_json: str,
    data_path: str | None,
    fingerprint: str | None,
    part: str,
    make: Callable[[InstitutionData, str, Preprocessor], Arrays],
) -> Arrays:
    """One institution's arrays of one ``part`` (train/test "", "validation") in ``RUN_ARRAYS``."""
    files = files_version([data_path] if data_path else config.data.files)
    keyed = SourceKey(vertical)
    fingerprint = config.fingerprint() if fingerprint is None else fingerprint
    run = (keyed, fingerprint, preprocessor_json, data_path, files)

    def build() -> Arrays:
        preprocessor = Preprocessor.from_json(preprocessor_json)
        if data_path is not None:
            federation, institution = load_node_institution(config, vertical, data_path)
        else:
            federation = _load_federation_cached(keyed, fingerprint, files)
            institution = federation.institutions[name]
        return make(institution, federation.schema.target, preprocessor)

    return RUN_ARRAYS.get(run, f"{name}\x00{part}" if part else name, build)


def federation_arrays(config: ExperimentConfig, vertical: RowSource, preprocessor: Preprocessor) -> dict[str, Arrays]:
    """Every institution's arrays under ``preprocessor`` (simulation): the same cached arrays
    the nodes trained and evaluated on, for the baselines and metrics that need them."""
    federation = load_federation(config, vertical)
    preprocessor_json = preprocessor.to_json()
    return {name: institution_arrays(config, vertical, name, preprocessor_json) for name in federation.names}


def node_institution(
    config: ExperimentConfig, vertical: RowSource, node_config: Mapping[str, Any], fingerprint: str | None = None
) -> tuple[Federation, InstitutionData]:
    """The institution a Flower node serves, found from its node config."""
    if "data-path" in node_config:  # deployment: this node reads its own file and nothing else
        return load_node_institution(config, vertical, str(node_config["data-path"]))
    federation = load_federation(config, vertical, fingerprint)
    if "partition-id" not in node_config:
        raise ConfigError("node config needs 'partition-id' (simulation) or 'data-path' (deployment)")
    index = int(node_config["partition-id"])
    names = federation.names
    if not 0 <= index < len(names):
        raise ConfigError(f"partition-id {index} is out of range: the run has {len(names)} institutions")
    return federation, federation.institutions[names[index]]
