"""Shared widgets of the vertical pages: sidebar controls, data view, live run, comparison, uploads.

Every vertical page is the same layout built from these functions, keyed by the vertical's
name so that two pages never share widget state. They call only the public API
(``ExperimentConfig``, ``run_experiment`` through ``runner.run_live``, ``consortia.demo.overview``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import altair as alt
import pandas as pd
import streamlit as st

from consortia.demo.runner import ResultStore, RunStopped, run_live
from consortia.errors import ConfigError, ConsortiaError

if TYPE_CHECKING:
    from pathlib import Path

    from consortia.config import ExperimentConfig
    from consortia.data.mapping import DataMapping
    from consortia.runs.results import RoundRecord, RunResult
    from consortia.verticals import Vertical

HETEROGENEITY = {
    "natural": "natural (each institution's own population)",
    "iid": "IID (rows reshuffled evenly)",
    "dirichlet": "Dirichlet label skew",
    "quantity": "quantity skew (sizes differ)",
}
ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0]
MODE_ORDER = ["local-only", "federated", "federated + fine-tuned", "centralized"]
#: the own-data tab's source that means "the files uploaded here" (the others name shipped examples)
UPLOAD = "upload"


def key(vertical: str, name: str) -> str:
    """Widget and session keys are per vertical so pages never share state."""
    return f"{vertical}:{name}"


def metric_label(metric: str) -> str:
    return metric.upper() if len(metric) <= 6 else metric.replace("_", " ")


@st.cache_resource(show_spinner=False)
def result_store() -> ResultStore:
    """Finished runs by config fingerprint, shared by every session of this app process."""
    return ResultStore()


# -- sidebar ------------------------------------------------------------------------------------
#: settings of the synthetic generator: they mean nothing for files (one institution per file)
SYNTHETIC_SETTINGS = ("institutions", "rows", "partition")


def own_data_in_use(vertical: str) -> bool:
    """Files (uploaded or a shipped example) are chosen on the own-data tab.

    The sidebar is drawn before that tab, so it reads the tab's widgets from the session.
    """
    source = st.session_state.get(key(vertical, "source"), UPLOAD)
    return source != UPLOAD or bool(st.session_state.get(key(vertical, "upload")))


def strategy_choices(model: str) -> list[str]:
    """Strategies that can train ``model``.

    The ``fedxgb_*`` strategies combine XGBoost trees and fail with any other model; for
    ``xgboost`` the strategy follows from its federation mode (``xgb_mode``), so none is offered.
    The others need what ``consortia.demo.strategies.NEEDS`` says (SCAFFOLD and FedMeta a PyTorch
    model, FedMA the MLP, FedProx a proximal term).
    """
    from consortia.config.xgboost import XGB_STRATEGIES
    from consortia.demo.strategies import strategy_supported
    from consortia.federation.strategies import STRATEGIES

    if model == "xgboost":
        return []
    trees = set(XGB_STRATEGIES.values())
    return [name for name in STRATEGIES.names() if name not in trees and strategy_supported(name, model)]


def strategy_options(vertical: str, strategy: str) -> dict[str, Any]:
    """The strategy's key options (``consortia.demo.strategies.OPTIONS``) as sidebar widgets;
    their values become ``strategy_params``. A widget's key names the strategy, so that two
    strategies never share an option's state."""
    from consortia.demo.strategies import OPTIONS, needs_text

    bar = st.sidebar
    chosen: dict[str, Any] = {}
    for option in OPTIONS.get(strategy, ()):
        if strategy == "fedmeta" and option.name == "inner_lr" and chosen.get("meta") == "reptile":
            continue  # Reptile's institutions train as usual: no inner step
        default = option.default_for(chosen)
        suffix = f":{chosen[option.depends_on]}" if option.depends_on else ""
        widget_key = key(vertical, f"{strategy}:{option.name}{suffix}")
        if option.choices:
            chosen[option.name] = bar.selectbox(
                option.label, list(option.choices), index=list(option.choices).index(default), key=widget_key,
                help=option.help or None,
            )  # fmt: skip
            continue
        if isinstance(option.default, int) and not isinstance(option.default, bool):
            number: float = bar.number_input(
                option.label, min_value=int(option.lo or 0), max_value=int(option.hi or 10_000),
                value=int(default), step=1, key=widget_key, help=option.help or None,
            )  # fmt: skip
            chosen[option.name] = int(number)
            continue
        number = bar.number_input(
            option.label, min_value=float(option.lo or 0.0), max_value=float(option.hi or 1e6),
            value=float(default), step=float(option.step or 0.01), format="%g", key=widget_key,
            help=option.help or None,
        )  # fmt: skip
        chosen[option.name] = float(number)
    if strategy in ("scaffold", "fedma", "fedmeta"):
        bar.caption(f"`{strategy}` runs with: {needs_text(strategy)}; no differential privacy.")
    return chosen


def sidebar_controls(vertical: Vertical) -> dict[str, Any]:
    """The run settings as ``ExperimentConfig`` keyword arguments.

    Later controls (privacy budget, secure aggregation) add their keys here.
    """
    from consortia.config.xgboost import XGB_MODES, XGB_STRATEGIES
    from consortia.learners import LEARNERS

    v = vertical.name
    bar = st.sidebar
    bar.header("Federation")
    files = own_data_in_use(v)
    if files:
        bar.caption(
            "Your own data is chosen on the **Use your own data** tab: each file is one "
            f"{vertical.institution_noun} with its own rows, so these synthetic-data settings do not apply."
        )
    institutions = bar.number_input(
        "Institutions", min_value=2, max_value=50, value=vertical.default_institutions, step=1,
        key=key(v, "institutions"), help=f"number of {vertical.institution_noun}s in the consortium", disabled=files,
    )  # fmt: skip
    rows = bar.number_input(
        "Rows", min_value=200, max_value=500_000, value=vertical.default_rows, step=500,
        key=key(v, "rows"), help="synthetic rows over all institutions together", disabled=files,
    )  # fmt: skip
    partition = bar.selectbox(
        "Heterogeneity", list(HETEROGENEITY), format_func=lambda kind: HETEROGENEITY[kind], key=key(v, "partition"),
        help="natural keeps each institution's generated population; the others re-split pooled rows",
        disabled=files,
    )  # fmt: skip
    alpha = 0.5
    if partition in ("dirichlet", "quantity"):
        alpha = bar.select_slider(
            "Dirichlet alpha (smaller = more skew)", options=ALPHAS, value=0.5, key=key(v, "alpha"), disabled=files
        )
    bar.header("Training")
    models = LEARNERS.names()
    model = bar.selectbox("Model", models, index=_index(models, "logistic"), key=key(v, "model"))
    training: dict[str, Any] = {"model": model}
    fixed_epochs = False
    strategies = strategy_choices(model)
    if strategies:
        training["strategy"] = bar.selectbox(
            "Strategy",
            strategies,
            index=_index(strategies, "fedavg"),
            key=key(v, "strategy"),
            help="only the strategies this model can train under are offered",
        )
        if params := strategy_options(v, training["strategy"]):
            training["strategy_params"] = params
    else:  # xgboost: the mode picks Flower's strategy (consortia.config.xgboost)
        mode = bar.selectbox(
            "XGBoost mode", list(XGB_MODES), key=key(v, "xgb_mode"),
            help="bagging: every institution adds trees each round; cyclic: one institution a round; "
            "histogram: one booster from the institutions' gradient histograms",
        )  # fmt: skip
        strategy = XGB_STRATEGIES.get(mode)
        bar.caption(f"Strategy: `{strategy}` (set by the mode)" if strategy else "Strategy: none (XGBoost's own)")
        training["xgb_mode"] = mode
        fixed_epochs = mode == "bagging"  # Flower's FedXgbBagging adds one tree per round
    rounds = bar.number_input("Rounds", min_value=1, max_value=500, value=20, key=key(v, "rounds"))
    if fixed_epochs:
        local_epochs = bar.number_input(
            "Local epochs", min_value=1, max_value=1, value=1, disabled=True, key=key(v, "local_epochs_bagging"),
            help="XGBoost bagging adds one tree per institution per round: use more rounds for more trees",
        )  # fmt: skip
    else:
        local_epochs = bar.number_input("Local epochs", min_value=1, max_value=50, value=1, key=key(v, "local_epochs"))
    finetune_epochs = bar.number_input(
        "Fine-tuning epochs", min_value=0, max_value=50, value=2, key=key(v, "finetune_epochs"),
        help="local epochs on the final global model at each institution",
    )  # fmt: skip
    seed = bar.number_input("Seed", min_value=0, max_value=2**31 - 1, value=42, key=key(v, "seed"))
    privacy = privacy_controls(vertical, model)
    return dict(
        vertical=v,
        institutions=int(institutions),
        rows=int(rows),
        partition={"kind": partition, "alpha": float(alpha)},
        **training,
        rounds=int(rounds),
        local_epochs=int(local_epochs),
        finetune_epochs=int(finetune_epochs),
        seed=int(seed),
        **({"privacy": privacy} if privacy else {}),
    )


#: the privacy mechanisms offered, with what each protects in a few words
PRIVACY_CHOICES = {
    "none": "none",
    "dp-sample": "record level (DP-SGD: one row)",
    "dp-client": "client level (DP-FedAvg: a whole institution)",
}


#: how the server combines updates: the plain protocol, or the secured one (consortia.federation.secure)
AGGREGATION_CHOICES = {
    "plain": "plain (the server sees each update)",
    "secagg+": "secured: SecAgg+ (the server sees only sums)",
    "he": "secured: homomorphic encryption (CKKS)",
}


def privacy_controls(vertical: Vertical, model: str) -> dict[str, Any]:
    """Differential privacy: the mechanism and its budget ε; {} for none."""
    from consortia.learners import capabilities

    v = vertical.name
    bar = st.sidebar
    bar.header("Privacy")
    mechanism = bar.selectbox(
        "Differential privacy", list(PRIVACY_CHOICES), format_func=PRIVACY_CHOICES.__getitem__,
        key=key(v, "dp"), help=f"record level protects each row of a {vertical.institution_noun}; client level "
        f"protects each whole {vertical.institution_noun}, and needs many of them to keep a useful model",
    )  # fmt: skip
    epsilon = bar.number_input(
        "Budget ε (whole run)", min_value=0.1, max_value=100.0, value=4.0, step=0.5, key=key(v, "epsilon"),
        disabled=mechanism == "none", help="smaller = more private and noisier; the noise is derived from it",
    )  # fmt: skip
    aggregation = bar.selectbox(
        "Aggregation (protocol)", list(AGGREGATION_CHOICES), format_func=AGGREGATION_CHOICES.__getitem__,
        key=key(v, "aggregation"), help="the secured protocol: the server sees only the consortium's sums "
        "(SecAgg+) or adds ciphertexts it cannot read (HE); XGBoost and robust strategies cannot be secured",
    )  # fmt: skip
    secure = {} if aggregation == "plain" else {"aggregation": aggregation}
    if mechanism == "none":
        return secure
    if mechanism == "dp-sample" and not capabilities(model).supports_batch_steps:
        bar.caption(f"Record-level DP trains batch by batch: choose logistic_torch or mlp (not {model}).")
    return {"mechanism": mechanism, "epsilon": float(epsilon), **secure}


def privacy_caption(result: RunResult) -> str:
    """One line under the results: the mechanism, the ε spent, and what it protects."""
    p = result.privacy
    secure = ""
    if p.get("aggregation", "plain") != "plain":
        cost = result.timings.get("federated_s")
        secure = f" Aggregation: {p['aggregation']} ({p.get('server_saw', '')})" + (
            f"; the federated phase took {cost:.1f} s." if cost is not None else "."
        )
    if p.get("mechanism", "none") == "none":
        return "Privacy: no differential privacy." + secure
    eps = p.get("epsilon")
    spent = "ε not accounted (adaptive clipping)" if eps is None else f"ε spent {eps:.2f}"
    if p["mechanism"] == "dp-sample" and eps is not None:
        spent += f" (largest over {result.institution_noun}s)"
    return f"Privacy: {p['mechanism']}, {spent}, δ {p.get('delta'):g}; {p.get('protects', '')}.{secure}"


def file_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The sidebar's settings for a run on files: without the synthetic-data controls."""
    return {k: v for k, v in settings.items() if k not in SYNTHETIC_SETTINGS}


def _index(options: list[str], wanted: str) -> int:
    return options.index(wanted) if wanted in options else 0


# -- data tab -----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Generating the institutions' data ...", max_entries=8)
def _overview(data_fingerprint: str):  # -> consortia.demo.overview.DataOverview
    from consortia.config import ExperimentConfig
    from consortia.demo.overview import data_overview

    return data_overview(ExperimentConfig.model_validate_json(data_fingerprint))


def data_tab(vertical: Vertical, config: ExperimentConfig) -> None:
    """Sizes, label rates and one feature's distribution per institution, before training."""
    from consortia.demo.overview import data_config

    try:
        overview = _overview(data_config(config).fingerprint())
    except ConsortiaError as exc:
        st.error(str(exc))
        return
    noun = overview.noun
    table = overview.table
    st.markdown(
        f"How the {len(table)} {noun}s differ before any training: size, share of positive "
        f"'{overview.target}' labels, and the distribution of one feature."
    )
    left, right = st.columns(2)
    sizes = table.melt(id_vars=[noun], value_vars=["train rows", "test rows"], var_name="split", value_name="rows")
    left.altair_chart(
        alt.Chart(sizes, title="Rows per institution")
        .mark_bar()
        .encode(x=alt.X(f"{noun}:N", title=None), y=alt.Y("rows:Q", stack=True), color="split:N",
                tooltip=[noun, "split", "rows"]),
        width="stretch",
    )  # fmt: skip
    right.altair_chart(
        alt.Chart(table, title=f"Label rate ({overview.target} = 1)")
        .mark_bar()
        .encode(x=alt.X(f"{noun}:N", title=None), y=alt.Y("label rate:Q", axis=alt.Axis(format="%")),
                tooltip=[noun, alt.Tooltip("label rate:Q", format=".1%")]),
        width="stretch",
    )  # fmt: skip
    st.dataframe(
        table, hide_index=True,
        column_config={"label rate": st.column_config.NumberColumn(format="percent")},
    )  # fmt: skip
    feature = st.selectbox("Feature", list(overview.features), key=key(vertical.name, "feature"))
    dist = overview.distribution(feature)
    if dist["kind"].iloc[0] == "numeric":
        chart = alt.Chart(dist).mark_line(point=True, interpolate="monotone").encode(
            x=alt.X("value:Q", title=feature), y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="share of rows"),
            color=f"{noun}:N",
            tooltip=[noun, alt.Tooltip("value:Q", format=".3g"), alt.Tooltip("share:Q", format=".1%")],
        )  # fmt: skip
    else:
        chart = alt.Chart(dist).mark_bar().encode(
            x=alt.X("value:N", title=feature), xOffset=f"{noun}:N",
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="share of rows"),
            color=f"{noun}:N", tooltip=[noun, "value", alt.Tooltip("share:Q", format=".1%")],
        )  # fmt: skip
    st.altair_chart(chart.properties(title=f"Distribution of {feature} per {noun}"), width="stretch")
    missing = overview.missing_rate(feature)
    if missing.any():
        st.caption(f"Missing {feature}: " + ", ".join(f"{name} {rate:.0%}" for name, rate in missing.items()))


# -- run tab ------------------------------------------------------------------------------------
def rounds_frame(rounds: list[RoundRecord], metric: str) -> pd.DataFrame:
    """Global metric per round: pooled over all test rows when known, else the weighted mean."""
    return pd.DataFrame(
        {
            "round": [r.round for r in rounds],
            metric: [r.metrics.get(f"pooled.{metric}", r.metrics.get(metric)) for r in rounds],
        }
    )


def rounds_chart(rounds: list[RoundRecord], metric: str, total: int) -> alt.Chart:
    frame = rounds_frame(rounds, metric)
    return (
        alt.Chart(frame, title=f"Global {metric_label(metric)} per round (all test rows)")
        .mark_line(point=True)
        .encode(
            x=alt.X("round:Q", scale=alt.Scale(domain=[1, max(total, 2)]), axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False), title=metric_label(metric)),
            tooltip=["round", alt.Tooltip(f"{metric}:Q", format=".4f")],
        )
    )


def run_tab(vertical: Vertical, config: ExperimentConfig) -> None:
    """Run button, live rounds with a Stop button, then the comparison of the four modes."""
    v = vertical.name
    fingerprint = config.fingerprint()
    store = result_store()
    ran: set[str] = st.session_state.setdefault(key(v, "ran"), set())
    clicked = st.button("Run federation", type="primary", icon=":material/play_arrow:", key=key(v, "run"))
    from_cache = False
    if clicked:
        st.session_state[key(v, "stop_requested")] = False
        result = store.get(fingerprint)
        from_cache = result is not None
        if result is None:
            result = _live_run(vertical, config)
            if result is None:
                return
            store.put(fingerprint, result)
        ran.add(fingerprint)
    else:
        partial = st.session_state.get(key(v, "partial"))
        if st.session_state.get(key(v, "stop_requested")) and partial and partial["fingerprint"] == fingerprint:
            _show_stopped(vertical, partial)
            return
        result = store.get(fingerprint) if fingerprint in ran else None
        if result is None:
            hint = "Settings changed since the last run: press" if ran else "Press"
            own = (
                " (synthetic data; your own files train on the **Use your own data** tab)" if own_data_in_use(v) else ""
            )
            st.info(
                f"{hint} **Run federation** to train {config.institutions} {vertical.institution_noun}s{own} "
                f"for {config.rounds} rounds and compare with local-only and centralized training."
            )
            return
    show_result(vertical, result, from_cache=from_cache)


def _request_stop(vertical: str) -> None:
    st.session_state[key(vertical, "stop_requested")] = True


def _live_run(vertical: Vertical, config: ExperimentConfig) -> RunResult | None:
    """Train with a growing chart and a progress bar; None when stopped or refused."""
    v = vertical.name
    metric = vertical.primary_metric
    rounds: list[RoundRecord] = []
    st.session_state[key(v, "partial")] = {
        "fingerprint": config.fingerprint(),
        "rounds": rounds,
        "total": config.rounds,
    }
    live = st.empty()
    with live.container():
        bar_col, stop_col = st.columns([5, 1], vertical_alignment="center")
        progress = bar_col.progress(0.0, text="Preparing the institutions' data ...")
        stop_col.button("Stop", icon=":material/stop:", key=key(v, "stop"), on_click=_request_stop, args=(v,))
        chart = st.empty()

    def on_round(record: RoundRecord) -> None:
        rounds.append(record)
        value = rounds_frame([record], metric)[metric].iloc[0]
        done = record.round >= config.rounds
        text = f"Round {record.round}/{config.rounds}: {metric_label(metric)} {value:.4f}"
        progress.progress(
            min(record.round / config.rounds, 1.0), text=text + (" - training the baselines ..." if done else "")
        )
        chart.altair_chart(rounds_chart(rounds, metric, config.rounds), width="stretch")

    try:
        result = run_live(
            config, on_round=on_round, should_stop=lambda: bool(st.session_state.get(key(v, "stop_requested")))
        )
    except RunStopped:
        live.empty()
        _show_stopped(vertical, st.session_state[key(v, "partial")])
        return None
    except ConsortiaError as exc:
        live.empty()
        st.error(str(exc))
        return None
    live.empty()
    return result


def _show_stopped(vertical: Vertical, partial: dict[str, Any]) -> None:
    rounds = partial["rounds"]
    st.warning(
        f"Run stopped after {len(rounds)} of {partial['total']} rounds; nothing was cached. "
        "Press **Run federation** to start again."
    )
    if rounds:
        st.altair_chart(rounds_chart(rounds, vertical.primary_metric, partial["total"]), width="stretch")


def comparison_frame(result: RunResult) -> pd.DataFrame:
    """The comparison table: one row per institution plus pooled, four modes and the gain."""
    from consortia.demo.overview import federation_gains

    frame = pd.DataFrame(result.table_rows())
    gains = federation_gains(result).table.set_index(result.institution_noun)["gain"]
    frame["gain (fine-tuned vs local)"] = frame[result.institution_noun].map(gains)
    pooled = frame[result.institution_noun] == "pooled"
    sign = -1.0 if _lower_is_better(result.primary_metric) else 1.0
    frame.loc[pooled, "gain (fine-tuned vs local)"] = sign * (
        frame.loc[pooled, "federated + fine-tuned"] - frame.loc[pooled, "local-only"]
    )
    return frame


def _lower_is_better(metric: str) -> bool:
    from consortia.demo.overview import lower_is_better

    return lower_is_better(metric)


def show_result(vertical: Vertical, result: RunResult, *, from_cache: bool = False) -> None:
    """The finished run: rounds chart, who gained, comparison chart and table, downloads."""
    from consortia.demo.overview import federation_gains

    v = vertical.name
    metric = result.primary_metric
    noun = result.institution_noun
    if from_cache:
        st.caption("Same settings as an earlier run: the result comes from the cache, nothing was retrained.")
    st.altair_chart(rounds_chart(result.rounds, metric, len(result.rounds)), width="stretch")
    st.subheader("Who gains?")
    st.success(federation_gains(result).sentence)
    frame = comparison_frame(result)
    long = frame.melt(id_vars=[noun], value_vars=MODE_ORDER, var_name="mode", value_name=metric).dropna()
    chart = (
        alt.Chart(long, title=f"{metric_label(metric)} on each {noun}'s test rows")
        .mark_point(filled=True, size=90)
        .encode(
            y=alt.Y(f"{noun}:N", sort=list(frame[noun]), title=None),
            x=alt.X(f"{metric}:Q", scale=alt.Scale(zero=False), title=metric_label(metric)),
            color=alt.Color("mode:N", sort=MODE_ORDER),
            shape=alt.Shape("mode:N", sort=MODE_ORDER),
            tooltip=[noun, "mode", alt.Tooltip(f"{metric}:Q", format=".4f")],
        )
    )
    height = max(220, 40 * len(frame))
    st.altair_chart(chart.properties(height=height), width="stretch", height=height + 60)
    number = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(
        frame, hide_index=True, key=key(v, "table"),
        column_config={c: number for c in frame.columns if c != noun},
    )  # fmt: skip
    left, right, _ = st.columns([1, 1, 3])
    left.download_button(
        "Run as JSON", result.to_json(), file_name=f"consortia-{v}-run.json", mime="application/json",
        icon=":material/download:", on_click="ignore", key=key(v, "download_json"),
    )  # fmt: skip
    right.download_button(
        "Table as CSV", frame.to_csv(index=False), file_name=f"consortia-{v}-comparison.csv", mime="text/csv",
        icon=":material/download:", on_click="ignore", key=key(v, "download_csv"),
    )  # fmt: skip
    t = result.timings
    st.caption(
        f"{len(result.rounds)} rounds; federated {t.get('federated_s', 0):.1f} s, centralized "
        f"{t.get('centralized_s', 0):.1f} s, local-only {t.get('local_only_s', 0):.1f} s, "
        f"total {t.get('total_s', 0):.1f} s."
    )
    st.caption(privacy_caption(result))
    tradeoff = privacy_tradeoff(result.vertical, result.privacy.get("mechanism", "none"))
    if tradeoff:
        st.caption(f"Measured trade-off for this mechanism ({TRADEOFF_FILE}, benchmarks/privacy_utility.py):")
        st.dataframe(pd.DataFrame(tradeoff), hide_index=True, key=key(v, "tradeoff"))


#: where benchmarks/privacy_utility.py writes its rows by default (relative to the working directory)
TRADEOFF_FILE = Path("runs") / "privacy_utility.json"


def privacy_tradeoff(vertical: str, mechanism: str, path: Path = TRADEOFF_FILE) -> list[dict[str, Any]]:
    """The benchmark's rows for this vertical and DP mechanism (and its no-DP row); [] if none or unreadable."""
    if mechanism == "none" or not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
        return [
            {
                "ε": "∞" if r["epsilon"] == "inf" else f"{r['epsilon']:g}", "institutions": r["institutions"],
                f"federated {r['metric']}": round(r["federated"], 4), "× centralized": round(r["ratio"], 3),
                "attack AUROC": round(r["attack_loss_auroc"], 3),
            }
            for r in rows
            if r["vertical"] == vertical and r["mechanism"] in (mechanism, "none") and not r.get("sweep")
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return []


# -- own data tab -------------------------------------------------------------------------------
def upload_tab(vertical: Vertical, settings: dict[str, Any]) -> None:
    """Train on real files: uploaded CSVs (with an optional mapping) or a shipped example.

    Uploads are checked against the vertical's schema first; training uses the sidebar's
    training settings with the files as the institutions. Uploaded files live in a temporary
    folder only for the duration of the check or the run.
    """
    from consortia.examples import EXAMPLES

    v = vertical.name
    examples = {e.name: e for e in EXAMPLES.values() if e.vertical == v}
    source = UPLOAD
    if examples:
        source = st.radio(
            "Source", [UPLOAD, *examples], key=key(v, "source"), horizontal=True,
            format_func=lambda s: "Upload CSV files" if s == UPLOAD else f"Shipped example: {examples[s].title}",
        )  # fmt: skip
    if source == UPLOAD:
        _uploads_section(vertical, settings)
    else:
        _example_section(vertical, settings, source)


def _uploads_section(vertical: Vertical, settings: dict[str, Any]) -> None:
    from consortia.data.mapping import DataMapping
    from consortia.demo.uploads import check_uploads, matching_example, read_mapping

    v = vertical.name
    schema = vertical.schema
    st.markdown(
        f"Upload one CSV file per {vertical.institution_noun}. Each is checked against the "
        f"{v} schema: columns {', '.join(f'`{n}`' for n in schema.feature_names)} and the "
        f"0/1 target `{schema.target}`. Other column names or labels? Add a `mapping.yaml` that "
        "translates them (as `consortia run --map` reads it). Files are read in a temporary folder "
        "that is deleted right after the check; nothing is kept."
    )
    st.download_button(
        "Example file", _example_csv(v), file_name=f"{v}-example.csv", mime="text/csv",
        icon=":material/description:", on_click="ignore", key=key(v, "example"),
    )  # fmt: skip
    files = st.file_uploader("Institution files (CSV)", type=["csv"], accept_multiple_files=True, key=key(v, "upload"))
    mapping_file = st.file_uploader(
        "Mapping (optional)", type=["yaml", "yml", "json"], key=key(v, "upload_mapping"),
        help="column names, category labels, missing markers and the target rule of your files "
        "(see docs/real_data.md); files with a shipped example's columns use its mapping by themselves",
    )  # fmt: skip
    if not files:
        return
    uploads = [(f.name, f.getvalue()) for f in files]
    mapping: DataMapping | None = None
    mapping_source: str | None = None
    if mapping_file is not None:
        try:
            mapping = read_mapping(mapping_file.name, mapping_file.getvalue())
        except ConfigError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        mapping_source = mapping_file.name
    elif (known := matching_example(v, uploads)) is not None:
        mapping, mapping_source = DataMapping.from_file(known.mapping_path), str(known.mapping_path)
        st.info(f"These files have the columns of the shipped example '{known.name}': using its mapping.")
    if not _show_checks(vertical, check_uploads(v, uploads, mapping)):
        return
    st.caption("Training uses the sidebar's model, strategy, rounds and seed; each file is one institution.")
    if st.button("Train on these files", type="primary", icon=":material/play_arrow:", key=key(v, "run_files")):
        from consortia.demo.uploads import uploaded_files

        with uploaded_files(uploads) as paths:
            _train_on_files(vertical, settings, _data(paths, mapping, mapping_source))


def _example_section(vertical: Vertical, settings: dict[str, Any], name: str) -> None:
    from consortia.data.mapping import DataMapping
    from consortia.examples import get_example

    v = vertical.name
    example = get_example(name)
    st.markdown(
        f"**{example.title}**. {example.source}; licence {example.licence}. One file per "
        f"{vertical.institution_noun}, translated to the {v} schema by the example's `mapping.yaml` "
        "(a starting point for a mapping of your own)."
    )
    st.download_button(
        "Its mapping.yaml", example.mapping_path.read_text(), file_name="mapping.yaml", mime="application/yaml",
        icon=":material/description:", on_click="ignore", key=key(v, "example_mapping"),
    )  # fmt: skip
    if not _show_checks(vertical, _example_checks(v, example.name)):
        return
    st.caption("Training uses the sidebar's model, strategy, rounds and seed; each file is one institution.")
    if st.button("Train on these files", type="primary", icon=":material/play_arrow:", key=key(v, "run_files")):
        mapping = DataMapping.from_file(example.mapping_path)
        _train_on_files(vertical, settings, _data(example.files, mapping, str(example.mapping_path)))


@st.cache_data(show_spinner=False)
def _example_checks(vertical_name: str, example_name: str) -> list[Any]:  # list[UploadCheck]
    from consortia.data.mapping import DataMapping
    from consortia.demo.uploads import check_files
    from consortia.examples import get_example

    example = get_example(example_name)
    return check_files(vertical_name, example.files, DataMapping.from_file(example.mapping_path))


def _show_checks(vertical: Vertical, checks: list[Any]) -> bool:
    """Each file's verdict; True when every file fits and there are enough to federate."""
    for check in checks:
        if not check.ok:
            st.error(check.message, icon=":material/error:")
    good = [c for c in checks if c.ok]
    if good:
        st.dataframe(
            pd.DataFrame([{"file": c.file, "rows": c.rows, "label rate": c.label_rate} for c in good]),
            hide_index=True, column_config={"label rate": st.column_config.NumberColumn(format="percent")},
        )  # fmt: skip
    if len(good) < len(checks):
        return False
    st.success(f"All {len(checks)} file(s) fit the {vertical.name} schema.")
    if len(checks) < 2:
        st.info("Upload at least two files (one per institution) to train a federation on them.")
        return False
    return True


def _data(paths: list[Path], mapping: DataMapping | None, mapping_source: str | None) -> dict[str, Any]:
    """The ``data`` part of the config, as ``consortia run --data ... --map`` builds it."""
    data: dict[str, Any] = {"files": [str(p) for p in paths]}
    if mapping is not None:
        data |= {"mapping": mapping.to_json(), "mapping_source": mapping_source}
    return data


def _train_on_files(vertical: Vertical, settings: dict[str, Any], data: dict[str, Any]) -> None:
    from consortia.config import ExperimentConfig

    try:
        config = ExperimentConfig.build(**file_settings(settings), data=data)
    except ConsortiaError as exc:
        st.error(str(exc))
        return
    result = _live_run(vertical, config)
    if result is not None:
        show_result(vertical, result)


@st.cache_data(show_spinner=False)
def _example_csv(vertical_name: str) -> str:
    from consortia.demo.uploads import example_frame

    return example_frame(vertical_name).to_csv(index=False)
