"""The Home page: what federated learning does here, the loop as a picture, where to go next.

Static on purpose: it imports nothing but Streamlit so that the first page appears fast.
"""

from __future__ import annotations

import streamlit as st

#: the training loop of every vertical page, drawn by Streamlit's Graphviz renderer
LOOP_DOT = """
digraph loop {
  rankdir=LR; bgcolor="transparent"; nodesep=0.35; ranksep=0.55;
  node [shape=box, style="rounded,filled", fillcolor="#eef4fb", color="#4a78b5",
        fontname="Helvetica", fontsize=11];
  edge [color="#4a78b5", fontname="Helvetica", fontsize=10];
  server [label="Server\\n(aggregates, never sees rows)", fillcolor="#fdf1e0", color="#c9822b"];
  subgraph cluster_inst {
    label="Institutions: data stays home"; fontname="Helvetica"; fontsize=11; color="#bbbbbb";
    style="rounded,dashed";
    a [label="Institution A\\n1. local training"];
    b [label="Institution B\\n1. local training"];
    c [label="Institution C\\n1. local training"];
  }
  a -> server [label="model update"];
  b -> server;
  c -> server;
  server -> global [label="2. aggregation"];
  global [label="3. global model\\nsent back to all", fillcolor="#e6f4ea", color="#3b8c55"];
  global -> tune [label="after the last round"];
  tune [label="4. local fine-tuning\\nat each institution", fillcolor="#e6f4ea", color="#3b8c55"];
  global -> a [style=dashed, label="next round", constraint=false];
}
"""

VERTICALS = (
    ("views/healthcare.py", "Healthcare", ":material/local_hospital:",
     "hospitals predict coronary heart disease without sharing patient records."),
    ("views/finance.py", "Finance", ":material/account_balance:",
     "banks detect fraud together, each seeing only its own transactions."),
    ("views/manufacturing.py", "Manufacturing", ":material/factory:",
     "factories predict product quality across plants whose machines drift differently."),
)  # fmt: skip


def render_home() -> None:
    st.title("Consortia: learning together, data stays home")
    st.markdown(
        "Several institutions want one good model, but none may hand its rows to the others. "
        "In **federated learning** the model travels instead of the data: each institution "
        "trains on its own rows, a server averages the updates into a global model, and the "
        "global model goes back for the next round. Consortia runs this loop on "
        "[Flower](https://flower.ai) and, on the same data splits, trains two baselines: "
        "**local-only** (each institution alone) and **centralized** (all rows pooled, which "
        "the consortium could not do in reality). The demo shows, per institution, whether "
        "joining the federation pays off."
    )
    st.subheader("The loop")
    st.graphviz_chart(LOOP_DOT, width="stretch")
    st.caption(
        "1\\. local training, 2. aggregation (FedAvg, FedProx, FedAdam, robust medians ...), "
        "3. the global update is sent back, repeated for every round; "
        "4. after the last round each institution fine-tunes the global model on its own rows."
    )
    st.subheader("Three industries")
    for path, title, icon, line in VERTICALS:
        left, right = st.columns([1, 4], vertical_alignment="center")
        with left:
            st.page_link(path, label=title, icon=icon)
        right.markdown(line)
    st.subheader("Where to go next")
    st.markdown(
        "- Open a vertical page, look at the **Data** tab to see how different the "
        "institutions are, then press **Run federation** and watch the rounds.\n"
        "- Change the heterogeneity (IID, Dirichlet label skew) and see who gains or loses.\n"
        "- **Use your own data**: upload one CSV per institution (with a `mapping.yaml` when your "
        "column names differ) to check it against the vertical's schema and train on it, or try "
        "the shipped UCI heart-disease files on the Healthcare page.\n"
        "- From a terminal: `consortia run healthcare --json run.json` gives the same "
        "comparison; `consortia list` shows every model and strategy."
    )
