"""Institutions from files: the real-data counterpart of a vertical's generator.

In simulation every file of the run is loaded (``config.data.files``) and all of them must agree
on their columns; in a deployment a node loads only the file its node config names. Either way
a file goes through the same loader, mapping and validation, and the same seeded split.
"""

from __future__ import annotations

import functools

import pandas as pd

from consortia.config import ExperimentConfig
from consortia.core.institutions import Federation, InstitutionData, split_institution
from consortia.datasets.loaders import LoadedData, institution_name, load_file, load_files
from consortia.datasets.mapping import DataMapping
from consortia.datasets.partition import partition_frame
from consortia.datasets.schema import TabularSchema
from consortia.verticals import Vertical, get_vertical


def mapping_of(config: ExperimentConfig) -> DataMapping | None:
    """The run's mapping: JSON text in the config, or (deployment) a path readable by the node."""
    text = config.data.mapping
    if not text:
        return None
    if text.lstrip().startswith("{"):
        return DataMapping.parse(text, source=config.data.mapping_source or "mapping")
    return DataMapping.from_file(text)


def load_data(config: ExperimentConfig, vertical: Vertical | None = None) -> LoadedData:
    """Every file of the run, mapped and validated (no split yet)."""
    vertical = vertical or get_vertical(config.vertical)
    return load_files(
        config.data.files, vertical.schema, mapping_of(config),
        target=config.data.target, min_rows=config.data.min_rows,
    )  # fmt: skip


def load_file_federation(
    config: ExperimentConfig, vertical: Vertical
) -> tuple[TabularSchema, dict[str, InstitutionData]]:
    """Schema and split institutions of a file-based run."""
    if config.data.protocol == "flamby":
        from consortia.examples import flamby_heart

        return flamby_heart.SCHEMA, {
            institution_name(path): InstitutionData(institution_name(path), *flamby_heart.split_centre(path))
            for path in config.data.files
        }
    loaded = load_data(config, vertical)
    frames = loaded.frames
    if config.partition.kind != "natural":  # re-split the pooled rows to study heterogeneity
        column = "__institution__"
        pooled = pd.concat([f.assign(**{column: n}) for n, f in frames.items()], ignore_index=True)
        frames = partition_frame(
            pooled, config.partition, num_institutions=config.institutions,
            target=loaded.schema.target, natural_column=column, seed=config.seed,
        )  # fmt: skip
        frames = {n: f.drop(columns=[column]) for n, f in frames.items()}
    institutions = {
        name: split_institution(name, frame, vertical, loaded.schema, config) for name, frame in frames.items()
    }
    return loaded.schema, institutions


def load_node_institution(config: ExperimentConfig, path: str) -> tuple[Federation, InstitutionData]:
    """A deployed node's own institution: its file only, split with the run's seed."""
    from consortia.core.institutions import files_version

    return _node_cached(config.fingerprint(), path, files_version([path]))


@functools.lru_cache(maxsize=8)
def _node_cached(fingerprint: str, path: str, _version: tuple = ()) -> tuple[Federation, InstitutionData]:
    config = ExperimentConfig.model_validate_json(fingerprint)
    vertical = get_vertical(config.vertical)
    name = institution_name(path)
    if config.data.protocol == "flamby":
        from consortia.examples import flamby_heart

        institution = InstitutionData(name, *flamby_heart.split_centre(path))
        return Federation(vertical, flamby_heart.SCHEMA, {name: institution}), institution
    loaded = load_file(
        path, vertical.schema, mapping_of(config), target=config.data.target, min_rows=config.data.min_rows
    )
    institution = split_institution(name, loaded.frame, vertical, loaded.schema, config)
    return Federation(vertical, loaded.schema, {name: institution}), institution


def data_options(
    vertical: str,
    *,
    files: list[str] | None = None,
    data_dir: str | None = None,
    target: str | None = None,
    mapping_path: str | None = None,
    example: str | None = None,
    protocol: str = "consortia",
) -> tuple[dict, list[str]]:
    """The ``data`` part of a config from CLI options, and notes to print.

    Mapping lookup: ``--map``; else ``mapping.yaml`` beside the files; else the mapping of a
    shipped example whose files have the same columns (so an original copy of the UCI heart
    files works without ``--map``).
    """
    from pathlib import Path

    from consortia.datasets.loaders import discover_files
    from consortia.errors import ConfigError
    from consortia.examples import find_example_for, get_example

    notes: list[str] = []
    given = [bool(files), bool(data_dir), bool(example)]
    if sum(given) > 1:
        raise ConfigError("use only one of --data, --data-dir and --example")
    if not any(given):
        if target or mapping_path or protocol != "consortia":
            raise ConfigError("--target, --map and --protocol need --data, --data-dir or --example")
        return {}, notes
    if example:
        spec = get_example(example)
        if spec.vertical != vertical:
            raise ConfigError(f"example '{spec.name}' belongs to the '{spec.vertical}' vertical")
        paths = spec.files
        mapping_path = mapping_path or str(spec.mapping_path)
    elif data_dir:
        paths = discover_files(data_dir)
    else:
        paths = [Path(f) for f in files or []]
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"--data {path}: no such file")
    if mapping_path is None:
        beside = [p.parent / "mapping.yaml" for p in paths if (p.parent / "mapping.yaml").is_file()]
        known = find_example_for(paths, vertical)
        if beside:
            mapping_path = str(beside[0])
        elif known is not None:
            mapping_path = str(known.mapping_path)
            notes.append(f"these files have the columns of the shipped example '{known.name}': using its mapping")
    data: dict = {"files": [str(p.resolve()) for p in paths], "protocol": protocol}
    if target:
        data["target"] = target
    if mapping_path and protocol == "consortia":
        data["mapping"] = DataMapping.from_file(mapping_path).to_json()
        data["mapping_source"] = str(Path(mapping_path).resolve())
    return data, notes
