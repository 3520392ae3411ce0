"""One function agrees the consortium's schema: simulation (files) and deployment (summaries) agree."""

from __future__ import annotations

import pandas as pd

from consortia.data.loaders import load_file, load_files, schema_from_summaries
from consortia.data.mapping import DataMapping
from consortia.data.preprocessing import FeatureSummary
from consortia.examples import get_example
from consortia.verticals import get_vertical


def test_files_and_summaries_give_the_same_schema(tmp_path) -> None:
    example = get_example("uci-heart")
    mapping = DataMapping.from_file(example.mapping_path)
    paths = []
    for i, path in enumerate(example.files):  # extras: numeric at all, numeric at some, one missing somewhere
        frame = pd.read_csv(path)
        frame["site_score"] = range(len(frame))
        frame["ward"] = [f"w{j % 3}" for j in range(len(frame))] if i else list(range(len(frame)))
        if i != 2:
            frame["only_some"] = 1.0
        target = tmp_path / path.name
        frame.to_csv(target, index=False)
        paths.append(target)
    text = example.mapping_path.read_text() + "infer_extra: true\n"
    (tmp_path / "mapping.yaml").write_text(text)
    mapping = DataMapping.from_file(tmp_path / "mapping.yaml")
    base = get_vertical("healthcare").schema
    loaded = load_files(paths, base, mapping)
    # a deployed node knows only its own file: its summary follows that file's own schema
    own = [load_file(path, base, mapping) for path in paths]
    summaries = [FeatureSummary.from_frame(f.frame, f.schema) for f in own]
    assert schema_from_summaries(base, summaries) == loaded.schema
    assert "only_some" not in loaded.schema.feature_names
    assert loaded.schema.feature("ward").kind == "categorical" and loaded.schema.feature("site_score").kind == "numeric"
