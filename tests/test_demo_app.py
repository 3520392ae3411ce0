"""The Streamlit demo, page by page, through ``streamlit.testing.v1.AppTest``.

Each vertical page runs a small federation and must show numbers from that very run: the
test computes the same run through the public API and compares the chart's and the table's
data with it. Bad uploads must show the schema's message (file, column, rows).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from consortia.demo import APP_SCRIPT
from consortia.verticals import VERTICALS

PAGES = ["healthcare", "finance", "manufacturing"]
TIMEOUT = 180


def _vertical_or_skip(name: str):
    if name not in VERTICALS:
        pytest.skip(f"vertical '{name}' is not registered yet (consortia.verticals.VERTICALS)")
    return VERTICALS.get(name)


def _open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def _small(at: AppTest, name: str, rows: int) -> None:
    at.number_input(key=f"{name}:institutions").set_value(3)
    at.number_input(key=f"{name}:rows").set_value(rows)
    at.number_input(key=f"{name}:rounds").set_value(3)
    at.run()


def _charts(at: AppTest) -> dict[str, pd.DataFrame]:
    """Every Vega-Lite chart on the page: title -> its data (decoded from the Arrow payload)."""
    charts = {}
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        (dataset,) = element.proto.datasets
        charts[str(title)] = pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()
    return charts


def _small_rows(vertical) -> int:
    return max(600, min(vertical.default_rows, 3000) // 2)


# -- Home ---------------------------------------------------------------------------------------
def test_home_page_explains_and_links_without_importing_the_training_stack():
    """Home renders the loop picture and links to the verticals; flwr and torch stay unimported."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP_SCRIPT)!r}, default_timeout=60)
        at.run()
        print(json.dumps({{
            "exception": [str(e.value) for e in at.exception],
            "titles": [t.value for t in at.title],
            "graphviz": len(at.get("graphviz_chart")),
            "links": [e.proto.page for e in at.get("page_link")],
            "heavy": [m for m in ("flwr", "torch", "sklearn", "consortia.federation") if m in sys.modules],
        }}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["exception"] == []
    assert any("Consortia" in t for t in seen["titles"])
    assert seen["graphviz"] == 1
    assert len(seen["links"]) == 3
    assert seen["heavy"] == [], f"Home imported {seen['heavy']}"


# -- vertical pages -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", PAGES)
def test_vertical_page_runs_and_shows_this_runs_numbers(name):
    vertical = _vertical_or_skip(name)
    from consortia import ExperimentConfig, run_experiment
    from consortia.runs.results import MODE_TITLES, MODES

    at = _open_page(name)
    rows = _small_rows(vertical)
    _small(at, name, rows)
    at.button(key=f"{name}:run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    # the same settings through the public API give the numbers the page must show
    config = ExperimentConfig.build(
        vertical=name, institutions=3, rows=rows, rounds=3, partition={"kind": "natural", "alpha": 0.5}
    )
    assert at.session_state[f"{name}:ran"] == {config.fingerprint()}
    expected = run_experiment(config)
    metric = expected.primary_metric

    charts = _charts(at)
    per_round = next(frame for title, frame in charts.items() if "per round" in title)
    want = [r.metrics.get(f"pooled.{metric}", r.metrics.get(metric)) for r in expected.rounds]
    np.testing.assert_allclose(per_round[metric].to_numpy(dtype=float), want, rtol=1e-9)
    compared = next(frame for title, frame in charts.items() if "test rows" in title and "mode" in frame)
    assert set(compared["mode"]) <= set(MODE_TITLES.values()) and len(compared) >= 3 * 3

    (table,) = [d.value for d in at.dataframe if "federated" in d.value.columns]
    want_rows = expected.table_rows()
    assert list(table[expected.institution_noun]) == [r[expected.institution_noun] for r in want_rows]
    for mode in MODES:
        column = MODE_TITLES[mode]
        np.testing.assert_allclose(
            table[column].to_numpy(dtype=float), [float(r[column]) for r in want_rows], rtol=1e-9, equal_nan=True
        )
    assert any("beat local-only" in s.value for s in at.success)
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Run as JSON", "Table as CSV"} <= labels

    # the data tab counts the same rows the run trained on
    (sizes,) = [d.value for d in at.dataframe if "train rows" in d.value.columns]
    assert sizes["train rows"].sum() == sum(s["train"] for s in expected.institution_sizes.values())
    assert any("Distribution of" in title for title in charts)

    # the same settings again come from the cache
    at.button(key=f"{name}:run").click().run()
    assert any("from the cache" in c.value for c in at.caption)
    (again,) = [d.value for d in at.dataframe if "federated" in d.value.columns]
    pd.testing.assert_frame_equal(again, table)


@pytest.mark.parametrize("name", PAGES)
def test_bad_upload_shows_the_validation_message(name):
    vertical = _vertical_or_skip(name)
    schema = vertical.schema
    at = _open_page(name)
    frame = vertical.generate(2, 400, 1)
    good = frame.head(60)
    bad = good.copy()
    bounded = next(f for f in schema.features if f.kind == "numeric" and f.min is not None)
    bad[bounded.name] = bad[bounded.name].astype(float)
    bad.loc[bad.index[4], bounded.name] = bounded.min - 1000
    missing = good.drop(columns=[schema.target])  # a missing feature is fine (training drops it)

    uploader = at.file_uploader(key=f"{name}:upload")
    uploader.set_value([
        ("site-a.csv", good.to_csv(index=False).encode(), "text/csv"),
        ("site-b.csv", bad.to_csv(index=False).encode(), "text/csv"),
        ("site-c.csv", missing.to_csv(index=False).encode(), "text/csv"),
        ("site-d.csv", b"\x00\x01 not a csv \xff", "text/csv"),
    ]).run()  # fmt: skip
    assert not at.exception, at.exception
    messages = [e.value for e in at.error]
    assert len(messages) == 3, messages
    out_of_range = next(m for m in messages if "site-b.csv" in m)
    assert f"column '{bounded.name}'" in out_of_range and "rows 5" in out_of_range
    no_column = next(m for m in messages if "site-c.csv" in m)
    assert f"target column '{schema.target}' is missing" in no_column
    assert any("site-d.csv" in m for m in messages)
    (summary,) = [d.value for d in at.dataframe if "file" in d.value.columns]
    assert list(summary["file"]) == ["site-a.csv"] and summary["rows"].iloc[0] == 60


def test_valid_uploads_train_a_federation_named_after_the_files(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # every temp folder lands here
    vertical = VERTICALS.get("healthcare")
    frame = vertical.generate(3, 1200, 42)
    at = _open_page("healthcare")
    at.number_input(key="healthcare:rounds").set_value(2).run()
    files = [
        (f"site-{i}.csv", rows.drop(columns=["hospital"]).to_csv(index=False).encode(), "text/csv")
        for i, (_, rows) in enumerate(frame.groupby("hospital"))
    ]
    at.file_uploader(key="healthcare:upload").set_value(files).run()
    assert not at.error, [e.value for e in at.error]
    at.button(key="healthcare:run_files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (table,) = [d.value for d in at.dataframe if "federated" in d.value.columns]
    assert list(table["hospital"]) == ["site-0", "site-1", "site-2", "pooled"]
    assert table["federated"].notna().all() and table["federated"].between(0.5, 1).all()
    assert list(tmp_path.iterdir()) == []  # uploads lived only in a temporary folder, now gone


# -- strategies offered per model --------------------------------------------------------------
#: the strategies of the heterogeneous protocol and the robust aggregators, with the models they need
NEW_STRATEGIES = {
    "scaffold": {"logistic_torch", "mlp"}, "fedmeta": {"logistic_torch", "mlp"}, "fedma": {"mlp"},
    "qfedavg": {"logistic", "logistic_torch", "mlp"}, "fedmedian": {"logistic", "logistic_torch", "mlp"},
    "fedtrimmedavg": {"logistic", "logistic_torch", "mlp"}, "krum": {"logistic", "logistic_torch", "mlp"},
    "multikrum": {"logistic", "logistic_torch", "mlp"}, "bulyan": {"logistic", "logistic_torch", "mlp"},
}  # fmt: skip


def test_strategy_choices_fit_the_model():
    """Each model is offered the strategies it can train under, each with options its strategy
    accepts; for XGBoost its mode picks the strategy."""
    from consortia import ExperimentConfig
    from consortia.demo.strategies import OPTIONS
    from consortia.demo.widgets import strategy_choices
    from consortia.federation.strategies import build_strategy

    at = _open_page("healthcare")
    offered = at.selectbox(key="healthcare:strategy").options
    assert "fedavg" in offered and not [s for s in offered if s.startswith("fedxgb")], offered
    assert offered == strategy_choices("logistic")
    for model in ("logistic", "logistic_torch", "mlp"):
        choices = strategy_choices(model)
        assert {s for s, models in NEW_STRATEGIES.items() if model in models} <= set(choices), (model, choices)
        assert not {s for s, models in NEW_STRATEGIES.items() if model not in models} & set(choices), (model, choices)
        for strategy in choices:  # every choice, with its options' defaults, is a config and a strategy that build
            params = {o.name: o.default for o in OPTIONS.get(strategy, ())}
            ExperimentConfig.build(model=model, strategy=strategy, strategy_params=params)
            build_strategy(strategy, params, num_institutions=5)
    assert "fedprox" not in strategy_choices("logistic")  # scikit-learn's logistic has no proximal term

    at.selectbox(key="healthcare:model").set_value("xgboost").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "healthcare:strategy" not in [s.key for s in at.sidebar.selectbox]
    assert at.selectbox(key="healthcare:xgb_mode").value == "bagging"
    assert any("fedxgb_bagging" in c.value for c in at.sidebar.caption)
    assert at.number_input(key="healthcare:local_epochs_bagging").disabled  # bagging: one tree per round
    at.selectbox(key="healthcare:xgb_mode").set_value("cyclic").run()
    assert not at.error and any("fedxgb_cyclic" in c.value for c in at.sidebar.caption)


def _sidebar_keys(at: AppTest) -> set[str]:
    return {w.key for w in [*at.sidebar.selectbox, *at.sidebar.number_input]}


def test_strategy_options_appear_per_strategy_and_reach_the_run():
    """The MLP offers FedMeta, FedMA, SCAFFOLD and the robust aggregators with their options;
    Reptile gets its own server step (1 would be FedAvg); the options are in the config that runs."""
    from consortia import ExperimentConfig

    name = "healthcare"
    at = _open_page(name)
    assert not {"scaffold", "fedma", "fedmeta"} & set(at.selectbox(key=f"{name}:strategy").options)
    at.selectbox(key=f"{name}:model").set_value("mlp").run()
    assert {"scaffold", "fedma", "fedmeta", "krum", "bulyan"} <= set(at.selectbox(key=f"{name}:strategy").options)
    expected = {
        "fedmeta": {"fedmeta:meta", "fedmeta:inner_lr", "fedmeta:server_lr:fomaml"},
        "scaffold": {"scaffold:option", "scaffold:server_lr"},
        "fedma": {"fedma:independent_init"},
        "qfedavg": {"qfedavg:client_learning_rate", "qfedavg:q"},
        "fedtrimmedavg": {"fedtrimmedavg:beta"},
        "krum": {"krum:num_malicious_nodes"},
        "multikrum": {"multikrum:num_malicious_nodes", "multikrum:num_nodes_to_select"},
        "bulyan": {"bulyan:num_malicious_nodes"},
    }
    for strategy, options in expected.items():
        at.selectbox(key=f"{name}:strategy").set_value(strategy).run()
        assert not at.exception and not at.error, (strategy, [e.value for e in at.error])
        assert {f"{name}:{o}" for o in options} <= _sidebar_keys(at), (strategy, _sidebar_keys(at))

    at.selectbox(key=f"{name}:strategy").set_value("fedmeta").run()
    at.selectbox(key=f"{name}:fedmeta:meta").set_value("reptile").run()
    assert f"{name}:fedmeta:inner_lr" not in _sidebar_keys(at)  # Reptile has no inner step
    assert at.number_input(key=f"{name}:fedmeta:server_lr:reptile").value == 1.5
    assert not at.error, [e.value for e in at.error]

    rows = 600
    _small(at, name, rows)
    at.button(key=f"{name}:run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = ExperimentConfig.build(
        vertical=name, institutions=3, rows=rows, rounds=3, partition={"kind": "natural", "alpha": 0.5},
        model="mlp", strategy="fedmeta", strategy_params={"meta": "reptile", "server_lr": 1.5},
    )  # fmt: skip
    assert at.session_state[f"{name}:ran"] == {config.fingerprint()}


def test_transfer_tab_shows_the_newcomer_curve():
    """The New institution tab trains the page's settings and draws the transfer curve."""
    from consortia.demo.views.transfer import CHART_TITLE

    name = "healthcare"
    at = _open_page(name)
    _small(at, name, 600)
    at.button(key=f"{name}:transfer").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    charts = _charts(at)
    assert CHART_TITLE in charts, list(charts)
    curve = charts[CHART_TITLE]
    assert set(curve["mode"]) == {"from the consortium's model", "alone, from scratch"}
    assert sorted(set(curve["labels"])) == [10, 25, 50, 100, 200]
    assert curve["auroc"].between(0, 1).all()
    assert any("with no labels at all" in c.value for c in at.caption)


# -- real files: mappings, the shipped example, controls that apply -----------------------------
SYNTHETIC = ("healthcare:institutions", "healthcare:rows")


def _synthetic_controls_disabled(at: AppTest) -> list[bool]:
    return [at.number_input(key=k).disabled for k in SYNTHETIC] + [at.selectbox(key="healthcare:partition").disabled]


def _uci_uploads(rename: dict[str, str] | None = None) -> list[tuple[str, bytes, str]]:
    from consortia.examples import get_example

    uploads = []
    for path in get_example("uci-heart").files:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).rename(columns=rename or {})
        uploads.append((path.name, frame.to_csv(index=False).encode(), "text/csv"))
    return uploads


def test_synthetic_controls_are_disabled_while_files_are_used():
    at = _open_page("healthcare")
    assert _synthetic_controls_disabled(at) == [False, False, False]
    at.file_uploader(key="healthcare:upload").set_value(_uci_uploads()).run()
    assert _synthetic_controls_disabled(at) == [True, True, True]
    assert any("do not apply" in c.value for c in at.sidebar.caption)
    at.file_uploader(key="healthcare:upload").set_value([]).run()
    assert _synthetic_controls_disabled(at) == [False, False, False]
    at.radio(key="healthcare:source").set_value("uci-heart").run()
    assert not at.exception and _synthetic_controls_disabled(at) == [True, True, True]


def test_uploaded_mapping_makes_renamed_uci_files_fit(tmp_path):
    """The UCI files with their own target name fail alone and fit with an uploaded mapping.yaml."""
    from consortia.examples import get_example

    at = _open_page("healthcare")
    at.number_input(key="healthcare:rounds").set_value(2).run()
    at.file_uploader(key="healthcare:upload").set_value(_uci_uploads({"num": "diagnosis"})).run()
    target = VERTICALS.get("healthcare").schema.target
    messages = [e.value for e in at.error]
    assert len(messages) == 4 and all(f"target column '{target}' is missing" in m for m in messages), messages
    mapping = get_example("uci-heart").mapping_path.read_text().replace("column: num", "column: diagnosis")
    at.file_uploader(key="healthcare:upload_mapping").set_value(("uci.yaml", mapping.encode(), "text/yaml")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (summary,) = [d.value for d in at.dataframe if "file" in d.value.columns]
    assert summary["rows"].sum() == 920
    at.button(key="healthcare:run_files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (table,) = [d.value for d in at.dataframe if "federated" in d.value.columns]
    assert list(table["hospital"]) == ["cleveland", "hungary", "switzerland", "va_long_beach", "pooled"]

    broken = ("bad.yaml", b"target: {column: num, positive: {gt: 0, lt: 3}}", "text/yaml")
    at.file_uploader(key="healthcare:upload_mapping").set_value(broken).run()
    assert any("bad.yaml" in e.value and "exactly one of" in e.value for e in at.error), [e.value for e in at.error]


def test_shipped_example_trains_as_the_cli_would():
    """Source 'uci-heart' trains the shipped files with their mapping: the CLI's --example numbers."""
    from consortia import ExperimentConfig, run_experiment
    from consortia.cli.data_options import data_options
    from consortia.runs.results import MODE_TITLES, MODES

    at = _open_page("healthcare")
    at.number_input(key="healthcare:rounds").set_value(2).run()
    at.radio(key="healthcare:source").set_value("uci-heart").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.button(key="healthcare:run_files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (table,) = [d.value for d in at.dataframe if "federated" in d.value.columns]

    data, _ = data_options("healthcare", example="uci-heart")
    expected = run_experiment(ExperimentConfig.build(vertical="healthcare", rounds=2, data=data))
    want = expected.table_rows()
    assert list(table["hospital"]) == [r["hospital"] for r in want]
    for mode in MODES:
        column = MODE_TITLES[mode]
        np.testing.assert_allclose(
            table[column].to_numpy(dtype=float), [float(r[column]) for r in want], rtol=1e-9, equal_nan=True
        )


def test_unregistered_vertical_page_says_so():
    at = AppTest.from_string(
        "from consortia.demo.vertical_page import render_vertical_page\nrender_vertical_page('astronomy')",
        default_timeout=60,
    )
    at.run()
    assert not at.exception
    assert "not part of this Consortia installation" in at.warning[0].value


# -- pieces the pages are built from ------------------------------------------------------------
def test_stop_request_aborts_the_run_after_the_current_round(small_config):
    from consortia.demo.runner import RunStopped, run_live

    seen = []
    with pytest.raises(RunStopped) as stopped:
        run_live(small_config(rounds=6), on_round=seen.append, should_stop=lambda: len(seen) >= 2)
    assert [r.round for r in seen] == [1, 2]
    assert (stopped.value.rounds_done, stopped.value.rounds_total) == (2, 6)


def test_result_store_keeps_the_most_recent_runs():
    from consortia.demo.runner import ResultStore

    store = ResultStore(max_entries=2)
    store.put("a", "A")
    store.put("b", "B")
    assert store.get("a") == "A"  # a is now the most recent
    store.put("c", "C")
    assert "b" not in store and store.get("a") == "A" and store.get("c") == "C"


def test_uploads_are_written_only_inside_a_temporary_folder(monkeypatch, tmp_path):
    from consortia.demo.uploads import check_uploads, safe_file_name

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    content = VERTICALS.get("healthcare").generate(2, 200, 3).head(40).to_csv(index=False).encode()
    (check,) = check_uploads("healthcare", [("../../escape.csv", content)])
    assert check.ok and check.file == "escape.csv" and check.rows == 40
    assert list((tmp_path / "tmp").iterdir()) == []  # the temp folder is gone again
    assert not (tmp_path / "escape.csv").exists()
    assert safe_file_name("..\\..\\a b$.csv") == "a_b_.csv"


def test_gain_sentence_names_who_gained_and_by_how_much():
    from consortia.demo.overview import federation_gains
    from consortia.runs.results import RunResult

    def modes(local, finetuned):
        return {"local_only": {"auroc": local}, "federated": {"auroc": finetuned},
                "federated_finetuned": {"auroc": finetuned}, "centralized": {"auroc": 0.9}}  # fmt: skip

    result = RunResult(
        config={}, vertical="healthcare", primary_metric="auroc", institution_noun="hospital", rounds=[],
        per_institution={"h1": modes(0.80, 0.85), "h2": modes(0.90, 0.88), "h3": modes(0.70, 0.74)},
        pooled={"local_only": {"auroc": 0.8}, "federated": {"auroc": 0.873}, "federated_finetuned": {"auroc": 0.88},
                "centralized": {"auroc": 0.9}},
        institution_sizes={}, timings={},
    )  # fmt: skip
    gains = federation_gains(result)
    assert list(gains.table["gain"].round(4)) == [0.05, -0.02, 0.04]
    s = gains.sentence
    assert "2 of 3 hospitals" in s and "+0.0233" in s and "h1, +0.0500" in s and "h2 did worse" in s
    assert "0.8730 against 0.9000" in s


def test_data_overview_distribution_shares_sum_to_one(small_config):
    from consortia.demo.overview import data_overview

    overview = data_overview(small_config())
    for feature in ("age", "smoking"):
        dist = overview.distribution(feature)
        missing = overview.missing_rate(feature)
        totals = dist.groupby(overview.noun)["share"].sum()
        # numeric bins leave out missing values; categorical shares count them as a category
        expected = 1 - missing if dist["kind"].iloc[0] == "numeric" else 1 + 0 * missing
        np.testing.assert_allclose(totals.sort_index(), expected.sort_index(), rtol=1e-9)
    assert (overview.table["train rows"] > 0).all()


def test_comparison_csv_round_trips(small_config):
    from consortia import run_experiment
    from consortia.demo.widgets import comparison_frame

    result = run_experiment(small_config(rounds=2))
    frame = comparison_frame(result)
    back = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    assert list(back.columns) == list(frame.columns)
    assert back["hospital"].iloc[-1] == "pooled"
    assert json.loads(result.to_json())["summary"]["metric"] == "auroc"


def test_privacy_tradeoff_reads_the_benchmark_rows(tmp_path):
    from consortia.demo.widgets import privacy_tradeoff

    row = {"vertical": "healthcare", "institutions": 5, "metric": "auroc", "federated": 0.89, "ratio": 0.99}
    rows = [
        {**row, "mechanism": "dp-sample", "epsilon": 4.0, "attack_loss_auroc": 0.51},
        {**row, "mechanism": "dp-client", "epsilon": 4.0, "attack_loss_auroc": 0.5},
        {**row, "mechanism": "none", "epsilon": "inf", "attack_loss_auroc": 0.52},
    ]
    path = tmp_path / "privacy_utility.json"
    path.write_text(json.dumps({"rows": rows}))
    shown = privacy_tradeoff("healthcare", "dp-sample", path)
    assert [r["ε"] for r in shown] == ["4", "∞"] and shown[0]["attack AUROC"] == 0.51
    assert privacy_tradeoff("healthcare", "none", path) == [] and privacy_tradeoff("finance", "dp-sample", path) == []
    path.write_text("not json")
    assert privacy_tradeoff("healthcare", "dp-sample", path) == []
