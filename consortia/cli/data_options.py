"""The ``data`` part of a config from ``--data`` / ``--data-dir`` / ``--example`` / ``--map``."""

from __future__ import annotations

from pathlib import Path

from consortia.data.loaders import discover_files
from consortia.data.mapping import DataMapping
from consortia.errors import ConfigError
from consortia.examples import find_example_for, get_example


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
            if path.is_dir():
                raise ConfigError(
                    f"--data {path} is a folder, not a file; to use every file in it, pass --data-dir {path}"
                )
            if not path.is_file():
                raise ConfigError(f"--data {path}: no such file")
    if len(paths) < 2:
        option = f"--data-dir {data_dir} holds" if data_dir else "--data names"
        raise ConfigError(
            f"{option} {len(paths)} file ({', '.join(str(p) for p in paths)}); a federation needs at least 2 "
            "institutions, one file each"
        )
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
