"""Hostile input through the CLI: every bad file, option or folder gives one clear line, never a
traceback, and is caught before training; nothing is silently wrong and no input is overwritten.

Every test reads the error line the user sees (``error: ...``, exit code 2) and works in
``tmp_path`` only (``--run-dir`` included), so nothing is written into the working tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from consortia.cli import app
from consortia.data.loaders import load_file
from consortia.data.mapping import DataMapping
from consortia.data.preprocessing import FeatureSummary, merge_summaries
from consortia.data.schema import TabularSchema
from consortia.examples import get_example
from consortia.verticals import get_vertical

runner = CliRunner()
HEART = get_example("uci-heart")
CLEVELAND, HUNGARY = HEART.files[0], HEART.files[1]
QUICK = ["--rounds", "1", "--finetune-epochs", "0"]
SMALL = ["--institutions", "3", "--rows", "1500", "--seed", "7", "--finetune-epochs", "0"]


def _run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result) -> str:
    """The one error line of a refused command (exit 2, no traceback, nothing after it)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    return errors[0]


def _notes(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("note:")]


def _uci(name: str = "cleveland") -> pd.DataFrame:
    path = next(p for p in HEART.files if p.stem == name)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _mapping(tmp_path: Path, **changes: list[str]) -> Path:
    """The shipped UCI mapping with more ``extra_numeric``/``extra_categorical``/``ignore`` entries."""
    document = yaml.safe_load(HEART.mapping_path.read_text())
    document["extra"]["numeric"] += changes.get("extra_numeric", [])
    document["extra"]["categorical"] += changes.get("extra_categorical", [])
    document["ignore"] = changes.get("ignore", [])
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A small finished healthcare run (3 rounds, a checkpoint per round); copy it before changing it."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    result = _run("run", "healthcare", *SMALL, "--rounds", "3", "--run-dir", folder)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture(scope="module")
def new_patients(tmp_path_factory) -> Path:
    """Rows in the healthcare schema to score (with the hospital and label columns, as exported)."""
    path = tmp_path_factory.mktemp("score") / "patients.csv"
    get_vertical("healthcare").generate(2, 200, 3).to_csv(path, index=False)
    return path


# 1 -- undeclared columns and label leaks ------------------------------------------------------
def test_undeclared_columns_are_refused_with_how_to_declare_them(tmp_path):
    paths = []
    for name in ("cleveland", "hungary"):
        frame = _uci(name)
        frame["leak"] = (frame["num"].astype(float) > 0).astype(int).astype(str)  # a copy of the label
        frame["patient_id"] = [str(i) for i in range(len(frame))]
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    data = [arg for p in paths for arg in ("--data", p)]
    run_dir = tmp_path / "run"
    line = _error_line(_run("run", "healthcare", *data, "--map", HEART.mapping_path, *QUICK, "--run-dir", run_dir))
    assert line.startswith(f"error: {paths[0]}: columns 'leak', 'patient_id' are in neither the schema nor")
    assert "extra (numeric: [...] or categorical: [...])" in line and "ignore: [leak, patient_id]" in line
    assert not run_dir.exists()

    # declared, the copy of the label trains, but a loud note names file and column at every site
    mapping = _mapping(tmp_path, extra_numeric=["leak"], ignore=["patient_id"])
    result = _run("run", "healthcare", *data, "--map", mapping, *QUICK, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    leaks = [n for n in _notes(result) if "possible label leak" in n]
    assert leaks == [
        f"note: {p}: possible label leak: column 'leak' equals the label in every row at this institution; "
        "if it is derived from the outcome, list it under 'ignore' in the mapping"
        for p in paths
    ]


def test_feature_that_nearly_predicts_the_label_is_noted(tmp_path):
    frame = _uci("cleveland")
    label = (frame["num"].astype(float) > 0).to_numpy()
    frame["troponin"] = np.where(label, 5.0, 1.0) + np.random.default_rng(0).uniform(0, 3.5, len(frame))
    path = tmp_path / "cleveland.csv"
    frame.to_csv(path, index=False)
    loaded = load_file(
        path, get_vertical("healthcare").schema, DataMapping.from_file(_mapping(tmp_path, extra_numeric=["troponin"]))
    )
    (leak,) = [n for n in loaded.notes if "label leak" in n]
    assert leak.startswith(f"{path}: possible label leak: column 'troponin' alone predicts the label (AUROC 1.000)")


def test_shipped_example_is_unchanged_and_raises_no_leak_note(tmp_path):
    result = _run("run", "healthcare", "--example", "uci-heart", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "pooled auroc: federated 0.9107 = 0.995 x centralized; local-only mean 0.8045" in result.output
    assert not any("leak" in n for n in _notes(result))


# 2 -- huge numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("huge", [1e200, 1e308])
def test_huge_values_give_finite_correct_statistics(huge):
    schema = TabularSchema(features=(), target="y").with_extra(["big"])
    values = np.r_[np.ones(29), huge]
    parts = [pd.DataFrame({"big": values[:15]}), pd.DataFrame({"big": values[15:]})]
    merged = merge_summaries([FeatureSummary.from_frame(p, schema) for p in parts], schema)
    scaled = values / huge  # the exact statistics, computed where nothing overflows
    assert merged.means[0] == pytest.approx(scaled.mean() * huge, rel=1e-12)
    assert merged.stds[0] == pytest.approx(scaled.std() * huge, rel=1e-9)
    assert np.isfinite(merged.transform(pd.DataFrame({"big": values}))).all()


def test_large_offset_keeps_its_spread():
    schema = TabularSchema(features=(), target="y").with_extra(["x"])
    frame = pd.DataFrame({"x": 1e10 + np.arange(40) % 2})  # sums of squares would cancel to nothing
    merged = merge_summaries([FeatureSummary.from_frame(frame, schema)], schema)
    assert merged.stds[0] == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("huge", ["1e200", "1e308"])
def test_huge_value_in_an_extra_column_trains(tmp_path, huge):
    paths = []
    for name in ("cleveland", "hungary"):
        frame = _uci(name).assign(big="1")
        frame.loc[3, "big"] = huge
        paths.append(tmp_path / f"{name}.csv")
        frame.to_csv(paths[-1], index=False)
    mapping = _mapping(tmp_path, extra_numeric=["big"])
    result = _run("run", "healthcare", "--data", paths[0], "--data", paths[1], "--map", mapping, *QUICK,
                  "--run-dir", tmp_path / "run", "--json", tmp_path / "r.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    pooled = json.loads((tmp_path / "r.json").read_text())["summary"]["pooled"]
    assert all(0.5 < v <= 1 for v in pooled.values())


# 3 -- damaged checkpoints and run configs -----------------------------------------------------
def test_resume_skips_a_truncated_checkpoint_and_says_so(run_copy):
    damaged = run_copy / "checkpoints" / "round-0003.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    result = _run("run", "healthcare", "--resume", run_copy)
    assert result.exit_code == 0, result.output
    notes = _notes(result)
    assert notes[0].startswith(f"note: skipped damaged checkpoint {damaged}: unreadable (")
    assert notes[1] == f"note: resuming {run_copy} from the checkpoint of round 2: training rounds 3-3"


def test_resume_skips_a_checkpoint_with_corrupt_json(run_copy):
    (run_copy / "checkpoints" / "round-0003.json").write_text('{"round": 3, "rou')
    result = _run("run", "healthcare", "--resume", run_copy)
    assert result.exit_code == 0, result.output
    notes = _notes(result)
    assert notes[0].startswith(f"note: skipped damaged checkpoint {run_copy / 'checkpoints' / 'round-0003.npz'}")
    assert notes[1] == f"note: resuming {run_copy} from the checkpoint of round 2: training rounds 3-3"


def test_corrupt_run_config_is_one_line_on_resume_and_predict(run_copy, new_patients, tmp_path):
    (run_copy / "config.json").write_text('{"vertical": "healthc')
    expected = f"error: {run_copy / 'config.json'}: unreadable run config ("
    assert _error_line(_run("run", "healthcare", "--resume", run_copy)).startswith(expected)
    line = _error_line(_run("predict", run_copy, "--data", new_patients, "--out", tmp_path / "s.csv"))
    assert line.startswith(expected)
    assert not (tmp_path / "s.csv").exists()


# 4 -- output paths, checked before training ---------------------------------------------------
def test_json_and_run_dir_are_checked_before_training(tmp_path):
    run_dir = tmp_path / "run"
    line = _error_line(_run("run", "healthcare", *SMALL, "--json", tmp_path, "--run-dir", run_dir))
    assert line == f"error: --json {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'result.json'}"
    missing = tmp_path / "nope" / "r.json"
    line = _error_line(_run("run", "healthcare", *SMALL, "--json", missing, "--run-dir", run_dir))
    assert line == f"error: --json {missing}: {missing.parent} does not exist; create it first"
    assert not run_dir.exists()  # refused before anything was written or trained
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    line = _error_line(_run("run", "healthcare", *SMALL, "--run-dir", a_file))
    assert line == f"error: --run-dir {a_file} is a file; give a folder (it is created if missing)"
    assert a_file.read_text() == "mine"


def test_predict_out_is_checked_and_never_overwrites_an_input(trained_run, new_patients, tmp_path):
    line = _error_line(_run("predict", trained_run, "--data", new_patients, "--out", tmp_path))
    assert line == f"error: --out {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'scores.csv'}"
    missing = tmp_path / "nope" / "s.csv"
    line = _error_line(_run("predict", trained_run, "--data", new_patients, "--out", missing))
    assert line == f"error: --out {missing}: {missing.parent} does not exist; create it first"
    before = _digest(new_patients)
    alias = new_patients.parent / "sub" / ".." / new_patients.name  # the same file, spelt differently
    (new_patients.parent / "sub").mkdir(exist_ok=True)
    line = _error_line(_run("predict", trained_run, "--data", new_patients, "--out", alias))
    assert line == f"error: --out {alias} is an input of this command; write to another file"
    assert _digest(new_patients) == before
    inside = trained_run / "config.json"
    line = _error_line(_run("predict", trained_run, "--data", new_patients, "--out", inside))
    assert line == f"error: --out {inside} is inside the run folder {trained_run}; write the scores elsewhere"
    result = _run("predict", trained_run, "--data", new_patients, "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 200


# 5 -- encodings, separators, folders ----------------------------------------------------------
def test_latin1_file_is_read_with_a_note(tmp_path):
    paths = []
    for name in ("cleveland", "hungary"):
        frame = _uci(name)
        frame["ward"] = [("Médecine", "Chirurgie", "Pédiatrie")[i % 3] for i in range(len(frame))]
        paths.append(tmp_path / f"{name}.csv")
        paths[-1].write_bytes(frame.to_csv(index=False).encode("latin-1"))
    mapping = _mapping(tmp_path, extra_categorical=["ward"])
    loaded = load_file(paths[0], get_vertical("healthcare").schema, DataMapping.from_file(mapping))
    assert "Médecine" in set(loaded.frame["ward"])  # decoded, not mangled
    result = _run("run", "healthcare", "--data", paths[0], "--data", paths[1], "--map", mapping, *QUICK,
                  "--run-dir", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _notes(result)[0] == (
        f"note: {paths[0]}: not UTF-8, read as cp1252; save it as UTF-8 if accented text looks wrong"
    )


def test_semicolon_separated_csv_is_read_with_a_note(tmp_path):
    paths = []
    for name in ("cleveland", "hungary"):
        paths.append(tmp_path / f"{name}.csv")
        _uci(name).to_csv(paths[-1], index=False, sep=";")
    result = _run("run", "healthcare", "--data", paths[0], "--data", paths[1], "--map", HEART.mapping_path, *QUICK,
                  "--run-dir", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _notes(result)[0] == (
        f"note: {paths[0]}: columns are separated by semicolons (;), not commas (,); read that way"
    )


def test_decimal_commas_get_a_hint(tmp_path):
    frame = _uci("cleveland")
    frame["oldpeak"] = frame["oldpeak"].str.replace(".", ",")
    path = tmp_path / "cleveland.csv"
    frame.to_csv(path, index=False, sep=";")
    line = _error_line(_run("run", "healthcare", "--data", path, "--data", HUNGARY, "--map", HEART.mapping_path,
                            *QUICK, "--run-dir", tmp_path / "run"))  # fmt: skip
    assert line.startswith(f"error: {path}, column 'oldpeak', rows 1, 2, 3, 4, 5 (+")
    assert line.endswith(
        "declare such markers as missing in the mapping or save the file with '.' as the decimal separator"
    )


def test_folder_passed_as_a_data_file(tmp_path):
    folder = tmp_path / "x.csv"
    folder.mkdir()
    line = _error_line(_run("run", "healthcare", "--data", folder, "--data", HUNGARY, "--run-dir", tmp_path / "r"))
    assert line == f"error: --data {folder} is a folder, not a file; to use every file in it, pass --data-dir {folder}"


# 6 -- Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_says_how_to_resume_and_resume_says_from_where(tmp_path, monkeypatch):
    from consortia.experiment import recorded

    real = recorded.run_experiment

    def interrupted_at_round_2(config, *, on_round=None, **kwargs):
        def hook(record):
            if on_round is not None:
                on_round(record)
            if record.round == 2:
                raise KeyboardInterrupt

        return real(config, on_round=hook, **kwargs)

    folder = tmp_path / "run"
    monkeypatch.setattr(recorded, "run_experiment", interrupted_at_round_2)
    result = _run("run", "healthcare", *SMALL, "--rounds", "3", "--run-dir", folder)
    assert result.exit_code == 130
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted (last checkpoint: round ")
    assert lines[0].endswith(f"); continue with `consortia run healthcare --resume {folder}`")
    monkeypatch.setattr(recorded, "run_experiment", real)
    result = _run("run", "healthcare", "--resume", folder)
    assert result.exit_code == 0, result.output
    assert _notes(result)[0].startswith(f"note: resuming {folder} from the checkpoint of round ")


# 7 -- --resume and the options given with it --------------------------------------------------
def test_resume_refuses_another_vertical_and_changed_options(run_copy, tmp_path):
    line = _error_line(_run("run", "finance", "--resume", run_copy))
    assert line == (
        f"error: --resume {run_copy} holds a healthcare run, not finance; "
        f"continue it with `consortia run healthcare --resume {run_copy}`"
    )
    line = _error_line(_run("run", "healthcare", "--resume", run_copy, "--model", "mlp", "--seed", "3"))
    assert line.startswith(
        f"error: --resume {run_copy} continues the stored run; these options differ from it: "
        "--model mlp (stored: logistic), --seed 3 (stored: 7). With --resume only --rounds"
    )
    line = _error_line(_run("run", "healthcare", "--resume", run_copy, "--rounds", "2"))
    assert line == f"error: --rounds 2: {run_copy} has already trained 3 rounds"
    # the same values as stored are no conflict, and more --rounds trains more
    out = tmp_path / "r.json"
    result = _run("run", "healthcare", "--resume", run_copy, "--seed", "7", "--model", "LOGISTIC", "--rounds", "4",
                  "--json", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"note: resuming {run_copy} from the checkpoint of round 3: training rounds 4-4" in _notes(result)
    assert len(json.loads(out.read_text())["rounds"]) == 4


# 8, 9 -- --rows and --metric, before training -------------------------------------------------
def test_too_few_rows_for_the_institutions(tmp_path):
    line = _error_line(_run("run", "healthcare", "--institutions", "50", "--rows", "500", "--run-dir", tmp_path / "r"))
    assert line == (
        "error: --rows 500 is too few for 50 hospitals: each gets at least 30 rows, so --rows must be at "
        "least 1500 (or use fewer --institutions)"
    )


def test_unknown_metric_is_refused_with_the_verticals_metrics(tmp_path):
    line = _error_line(_run("run", "healthcare", "--metric", "nonsense", "--run-dir", tmp_path / "r"))
    assert line == (
        "error: --metric 'nonsense': the healthcare vertical reports accuracy, auprc, auroc, brier, "
        "sensitivity_at_90_specificity"
    )
    assert not (tmp_path / "r").exists()


# a hostile session: ten more bad inputs, one clear line each ------------------------------------
def _hostile(tmp_path: Path, case: str) -> list[object]:
    """Command-line arguments for one bad input, its files written under ``tmp_path``."""
    uci = ["--map", HEART.mapping_path]
    if case == "empty file":
        (tmp_path / "empty.csv").write_text("")
        return ["--data", tmp_path / "empty.csv", "--data", HUNGARY, *uci]
    if case == "header only":
        (tmp_path / "header.csv").write_text(CLEVELAND.read_text().splitlines()[0] + "\n")
        return ["--data", tmp_path / "header.csv", "--data", HUNGARY, *uci]
    if case in ("all-NaN target", "one class"):
        _uci().assign(num="" if case == "all-NaN target" else "0").to_csv(tmp_path / "bad.csv", index=False)
        return ["--data", tmp_path / "bad.csv", "--data", HUNGARY, *uci]
    if case == "parquet that is text":
        shutil.copy(CLEVELAND, tmp_path / "cleveland.parquet")
        return ["--data", tmp_path / "cleveland.parquet", "--data", HUNGARY, *uci]
    if case == "yaml syntax error":
        (tmp_path / "m.yaml").write_text("target: {column: num\ncolumns: [a\n")
        return ["--example", "uci-heart", "--map", tmp_path / "m.yaml"]
    if case == "duplicate institution":
        for sub, source in (("a", CLEVELAND), ("b", HUNGARY)):
            (tmp_path / sub).mkdir()
            shutil.copy(source, tmp_path / sub / "site.csv")
        return ["--data", tmp_path / "a" / "site.csv", "--data", tmp_path / "b" / "site.csv", *uci]
    return {
        "rounds 0": ["--rounds", "0"],
        "alpha -1": ["--partition", "dirichlet", "--alpha", "-1"],
        "missing map": ["--example", "uci-heart", "--map", tmp_path / "none.yaml"],
        "one file": ["--data", HUNGARY],
        "bad model param": ["--model", "mlp", "--model-param", "hidden=abc"],
        "xgb mode without xgboost": ["--xgb-mode", "histogram"],
    }[case]


HOSTILE = {
    "empty file": "{tmp}/empty.csv: is empty: no header and no rows",
    "header only": "{tmp}/header.csv: has 0 rows; at least 10 are needed",
    "all-NaN target": "{tmp}/bad.csv, column 'num', rows 1, 2, 3, 4, 5 (+298 more): target has missing values",
    "one class": "{tmp}/bad.csv, column 'disease': target 'disease' has a single class (0)",
    "parquet that is text": "{tmp}/cleveland.parquet: is not a Parquet file (it does not start with PAR1)",
    "yaml syntax error": "{tmp}/m.yaml: cannot read the mapping (not valid YAML at line 2, column 8:",
    "duplicate institution": "{tmp}/a/site.csv and {tmp}/b/site.csv would both be institution 'site'",
    "rounds 0": "rounds: Input should be greater than or equal to 1 (got 0)",
    "alpha -1": "partition.alpha: Input should be greater than 0 (got -1.0)",
    "missing map": "mapping file {tmp}/none.yaml does not exist",
    "one file": f"--data names 1 file ({HUNGARY}); a federation needs at least 2 institutions",
    "bad model param": "model_params.hidden must look like '64,32'",
    "xgb mode without xgboost": "--xgb-mode histogram applies to --model xgboost only (got --model logistic)",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_gives_one_clear_line(tmp_path, case):
    run_dir = tmp_path / "run"
    line = _error_line(_run("run", "healthcare", *QUICK, *_hostile(tmp_path, case), "--run-dir", run_dir))
    assert line.startswith("error: " + HOSTILE[case].format(tmp=tmp_path)), line
    assert not run_dir.exists()  # refused before training: nothing left behind


def test_config_error_during_training_leaves_no_run_folder_behind(tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", "healthcare", *SMALL, "--strategy", "fedprox", "--strategy-param", "nonsense=1"]
    line = _error_line(_run(*args, "--run-dir", run_dir))
    assert "nonsense" in line and "proximal_mu" in line
    assert not run_dir.exists()  # so the same --run-dir works once the option is fixed
