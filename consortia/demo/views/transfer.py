"""The vertical page's "New institution" tab: the transfer curve of a newcomer with few labels.

The demo keeps no run folders, so the button trains the page's current settings once more into a
temporary run folder (the same seed gives the same global model as the Run tab's run), generates
one new institution with the vertical's generator and another seed, and calls the public
transfer API (``consortia.experiment.transfer``) on both, as ``consortia transfer`` would.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd
import streamlit as st

if TYPE_CHECKING:
    from consortia.config import ExperimentConfig
    from consortia.experiment.transfer import TransferResult, TransferSettings
    from consortia.verticals import Vertical

#: the newcomer's generator seed is the run's seed plus this (any other seed would do)
NEWCOMER_SEED_OFFSET = 1_000
CHART_TITLE = "A new institution: from the consortium's model vs alone"


def newcomer_rows(config: ExperimentConfig) -> int:
    """As many rows as an average member, and enough for the largest budget and a test split."""
    return max(2_000, config.rows // max(config.institutions, 1))


def measure(config: ExperimentConfig, settings: TransferSettings | None = None) -> TransferResult:
    """Train ``config`` into a temporary run folder, make a newcomer, return its transfer curve."""
    from consortia.demo.runner import run_live
    from consortia.experiment.transfer import newcomer_frame, transfer_curve
    from consortia.runs.folder import RunFolder

    with tempfile.TemporaryDirectory(prefix="consortia-transfer-") as tmp:
        run_dir = Path(tmp) / "run"
        recorded = config.model_copy(update={"run_dir": str(run_dir)})
        RunFolder(run_dir).write_config(recorded)  # a run folder, as `consortia run` leaves one
        run_live(recorded)
        data = Path(tmp) / "newcomer.csv"
        newcomer_frame(config.vertical, newcomer_rows(config), config.seed + NEWCOMER_SEED_OFFSET).to_csv(
            data, index=False
        )
        return transfer_curve(run_dir, data, settings)


def curve_frame(result: TransferResult) -> pd.DataFrame:
    """Long form for the chart: one row per budget and mode, mean and std over seeds."""
    rows = []
    for point in result.curve():
        for mode, title in (("consortium", "from the consortium's model"), ("alone", "alone, from scratch")):
            rows.append(
                {
                    "labels": int(point["labels"]),
                    "mode": title,
                    result.metric: point[f"{mode}_mean"],
                    "std": point[f"{mode}_std"],
                }
            )
    return pd.DataFrame(rows)


def curve_chart(result: TransferResult) -> alt.Chart:
    frame = curve_frame(result)
    frame["low"] = frame[result.metric] - frame["std"]
    frame["high"] = frame[result.metric] + frame["std"]
    x = alt.X("labels:Q", scale=alt.Scale(type="log"), title="labelled rows at the new institution")
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(f"{result.metric}:Q", scale=alt.Scale(zero=False), title=result.metric),
            color="mode:N",
            tooltip=[
                "labels",
                "mode",
                alt.Tooltip(f"{result.metric}:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        )
    )
    band = alt.Chart(frame).mark_area(opacity=0.2).encode(x=x, y="low:Q", y2="high:Q", color="mode:N")
    return (lines + band).properties(title=CHART_TITLE)


def transfer_tab(vertical: Vertical, config: ExperimentConfig) -> None:
    """Explain, offer the button, show this session's curve for these settings."""
    v = vertical.name
    noun = vertical.institution_noun
    st.markdown(
        f"A new {noun} joins after the federation trained. It has its own rows but labels only a few. "
        f"Should it start from the consortium's model and fine-tune, or train alone? "
        f"For each label budget (over 3 seeds) both are scored on the newcomer's held-out rows."
    )
    if config.data.files:
        st.info(f"The curve uses synthetic {noun}s: the sidebar's settings, not your files.")
        config = config.model_copy(update={"data": config.data.model_copy(update={"files": []})})
    state_key = f"{v}:transfer_result"
    fingerprint = config.fingerprint()
    if st.button("Measure transfer to a new " + noun, icon=":material/person_add:", key=f"{v}:transfer"):
        from consortia.errors import ConsortiaError

        with st.spinner(f"Training the consortium and a new {noun} ..."):
            try:
                st.session_state[state_key] = (fingerprint, measure(config))
            except ConsortiaError as exc:
                st.error(str(exc))
                return
    stored = st.session_state.get(state_key)
    if stored is None or stored[0] != fingerprint:
        st.caption("Press the button to train the current settings and measure the curve (a few seconds).")
        return
    result: TransferResult = stored[1]
    st.altair_chart(curve_chart(result), width="stretch")
    table = curve_frame(result).pivot(index="labels", columns="mode", values=result.metric).reset_index()
    st.dataframe(table, hide_index=True)
    as_is = sum(result.as_is) / len(result.as_is)
    st.caption(
        f"The consortium's model with no labels at all: {result.metric} {as_is:.4f}. New {noun}: "
        f"{result.rows} rows, {result.test_rows} held out; model {result.model}, fine-tuned "
        f"{result.finetune_epochs} epochs, alone {result.alone_epochs} epochs; {result.seconds:.1f} s."
    )
