"""Real data sets that ship with Consortia, runnable with ``consortia run <vertical> --example NAME``.

An example is a folder of one file per institution, a ``mapping.yaml`` and a README with the
data's source and licence. ``find_example_for(files)`` recognises a folder holding the same
columns as a shipped example, so ``--data-dir`` on an original copy works without ``--map``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from consortia.errors import ConfigError


@dataclass(frozen=True)
class Example:
    name: str
    vertical: str
    title: str
    folder: str  # package-relative folder under consortia/examples
    licence: str
    source: str

    @property
    def path(self) -> Path:
        return Path(str(resources.files("consortia.examples").joinpath(self.folder)))

    @property
    def files(self) -> list[Path]:
        from consortia.data.loaders import discover_files

        return discover_files(self.path)

    @property
    def mapping_path(self) -> Path:
        return self.path / "mapping.yaml"

    def columns(self) -> list[str]:
        with open(self.files[0]) as handle:
            return [c.strip() for c in handle.readline().strip().split(",")]


EXAMPLES: dict[str, Example] = {
    "uci-heart": Example(
        name="uci-heart",
        vertical="healthcare",
        title="UCI Heart Disease: Cleveland, Hungary, Switzerland, VA Long Beach (920 patients)",
        folder="uci_heart",
        licence="CC BY 4.0",
        source="UCI Machine Learning Repository, Heart Disease (Janosi, Steinbrunn, Pfisterer, Detrano, 1988)",
    ),
}


def get_example(name: str) -> Example:
    key = name.strip().lower()
    if key not in EXAMPLES:
        raise ConfigError(f"unknown example '{name}'; choose one of: {', '.join(EXAMPLES)}")
    return EXAMPLES[key]


def find_example_for(files: list[Path], vertical: str) -> Example | None:
    """The shipped example whose files have exactly these columns (same vertical), if any."""
    try:
        with open(files[0]) as handle:
            header = {c.strip() for c in handle.readline().strip().split(",")}
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    for example in EXAMPLES.values():
        if example.vertical == vertical and set(example.columns()) == header:
            return example
    return None
