"""The model card: what the model is, what it was trained on, how well it does, what it reveals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from consortia.config.privacy import NOT_COVERED, protects, server_sees
from consortia.runs.folder import CARD_JSON, CARD_MD, Checkpoint, RunFolder, atomic_write


def model_card(config, result, schema, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """Facts about the model: task, data, schema and mapping, metrics, privacy, provenance."""
    data = config.data
    mapping = json.loads(data.mapping) if data.mapping and data.mapping.lstrip().startswith("{") else data.mapping
    privacy = privacy_section(config, result)
    features = []
    if schema is not None:
        features = [
            {"name": f.name, "kind": f.kind, "min": f.min, "max": f.max,
             "categories": list(f.categories) if f.categories else None,
             "extra": f.name in schema.extra_columns}
            for f in schema.features
        ]  # fmt: skip
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "vertical": config.vertical,
        "task": f"binary prediction of '{schema.target if schema else 'target'}'",
        "model": {"family": config.model, "params": config.model_params},
        "training": {
            "strategy": config.strategy,
            "strategy_params": config.strategy_params,
            "rounds": config.rounds,
            "local_epochs": config.local_epochs,
            "finetune_epochs": config.finetune_epochs,
            "seed": config.seed,
            "engine": config.engine,
            "rounds_checkpointed": checkpoint.round if checkpoint else 0,
        },
        "data": {
            "source": "files" if data.files else "synthetic generator",
            "files": data.files,
            "protocol": data.protocol,
            "target_column": data.target,
            "mapping_source": data.mapping_source,
            "mapping": mapping,
            "institution_sizes": result.institution_sizes,
        },
        "schema": {"target": schema.target if schema else None, "features": features},
        "model_inputs": checkpoint.preprocessor.feature_names if checkpoint else None,
        "metrics": {
            "primary": result.primary_metric,
            "pooled": result.pooled,
            "per_institution": result.per_institution,
        },
        "privacy": privacy,
        "limitations": [
            "metrics are on each institution's held-out split of the same data, not an external cohort",
            "the global model is the last round's; fine-tuned models stay at the institutions",
        ],
    }


#: config keys besides ``privacy`` that would describe a protection (secure aggregation, encryption)
OTHER_PROTECTION_WORDS = ("secagg", "secure", "encrypt")
NO_PRIVACY = "none: plain federated averaging (model updates are visible to the server)"


def privacy_section(config, result) -> dict[str, Any] | str:
    """What the model's privacy guarantee is, in plain words, with the ε it spent."""
    values = config.model_dump(mode="json")
    others = {k: v for k, v in values.items() if any(w in k for w in OTHER_PROTECTION_WORDS) and v}
    settings = values.get("privacy") or {}
    recorded = dict(getattr(result, "privacy", None) or {})
    mechanism = recorded.get("mechanism") or settings.get("mechanism", "none")
    aggregation = recorded.get("aggregation") or settings.get("aggregation", "plain")
    saw = {"aggregation": aggregation, "server_saw": recorded.get("server_saw") or server_sees(aggregation)}
    if mechanism == "none":
        summary = NO_PRIVACY if aggregation == "plain" else f"no differential privacy; {saw['server_saw']}"
        return {"mechanism": "none", "summary": summary, **saw, **({"other": others} if others else {})}
    section = {
        "mechanism": mechanism,
        "epsilon": recorded.get("epsilon"),
        "delta": recorded.get("delta", settings.get("delta")),
        "target_epsilon": settings.get("epsilon"),
        "rounds_run": recorded.get("rounds_run"),
        "epsilon_per_round": recorded.get("epsilon_per_round", []),
        "protects": recorded.get("protects") or protects(mechanism),
        "not_covered": NOT_COVERED,
        "settings": settings,
        **saw,
    }
    return {**section, **({"other": others} if others else {})}


def render_privacy(privacy: dict[str, Any] | str) -> list[str]:
    if isinstance(privacy, str):  # cards written before the privacy settings existed
        return [privacy]
    if privacy.get("mechanism", "none") == "none":
        return [privacy.get("summary", NO_PRIVACY)]
    epsilon = privacy.get("epsilon")
    spent = "not accounted (adaptive clipping)" if epsilon is None else f"{epsilon:.3f}"
    if privacy["mechanism"] == "dp-sample" and epsilon is not None:
        spent += " (the largest over institutions; each has its own)"
    kind = {"dp-sample": "record level: DP-SGD with Opacus", "dp-client": "client level: DP-FedAvg, Flower's wrappers"}
    lines = [
        f"- mechanism: {privacy['mechanism']} ({kind.get(privacy['mechanism'], privacy['mechanism'])})",
        f"- ε spent: {spent}; target ε: {privacy.get('target_epsilon')}; δ: {privacy.get('delta')}",
        f"- what it protects: {privacy['protects']}",
        f"- what the server could see: {privacy.get('server_saw', 'every update (plain aggregation)')}",
        f"- {privacy['not_covered']}",
        "- settings: " + ", ".join(f"{k} {v}" for k, v in privacy.get("settings", {}).items()),
    ]
    return lines


def render_model_card(card: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"

    primary = card["metrics"]["primary"]
    lines = [
        f"# Model card: {card['vertical']} ({card['model']['family']}, {card['training']['strategy']})",
        "",
        f"Created {card['created']}. Task: {card['task']}.",
        "",
        "## Training",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in card["training"].items()]
    lines += ["", "## Data", ""]
    data = card["data"]
    lines += [f"- source: {data['source']}" + (f" ({data['protocol']} protocol)" if data["files"] else "")]
    if data["files"]:
        lines += [f"- files: {', '.join(data['files'])}"]
    if data["mapping_source"]:
        lines += [f"- mapping: {data['mapping_source']}"]
    lines += ["", "| institution | train rows | test rows |", "|---|---|---|"]
    lines += [f"| {n} | {s.get('train')} | {s.get('test')} |" for n, s in data["institution_sizes"].items()]
    lines += ["", "## Schema", ""]
    for f in card["schema"]["features"]:
        detail = f" categories {', '.join(f['categories'])}" if f["categories"] else ""
        rng = f" range [{f['min']}, {f['max']}]" if f["min"] is not None or f["max"] is not None else ""
        lines.append(f"- {f['name']}: {f['kind']}{rng}{detail}{' (extra)' if f['extra'] else ''}")
    lines += ["", f"## Metrics ({primary}, each institution's test split)", ""]
    modes = ["local_only", "federated", "federated_finetuned", "centralized"]
    lines += ["| institution | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for name, per in card["metrics"]["per_institution"].items():
        lines.append(f"| {name} | " + " | ".join(num(per.get(m, {}).get(primary)) for m in modes) + " |")
    pooled = card["metrics"]["pooled"]
    lines.append("| pooled | " + " | ".join(num(pooled.get(m, {}).get(primary)) for m in modes) + " |")
    lines += ["", "## Privacy", "", *render_privacy(card["privacy"]), ""]
    lines += render_disclosure(card.get("disclosure"))
    lines += ["", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    return "\n".join(lines) + "\n"


#: reply records that would carry single rows (allowed only by a node's own disclose-rows policy)
PER_ROW_RECORDS = ("scores", "metric-columns", "train-scores")


def render_disclosure(log: dict[str, Any] | None) -> list[str]:
    """The disclosure log in plain words: what each institution sent, and whether any row left."""
    if not log:
        return ["What left each institution was not recorded for this run (no Flower messages)."]
    per_row = sorted(
        {f"{name} ({record})" for name, kinds in log.items() for entry in kinds.values() for record in entry["records"]
         if record in PER_ROW_RECORDS}
    )  # fmt: skip
    lines = [
        "## What left each institution",
        "",
        "Per-row data (labels, scores or values of single rows) left: " + ", ".join(per_row)
        if per_row
        else "No per-row data left any institution: only model parameters, summaries (counts, means, "
        "spreads, category counts of at least k rows), metrics and score histograms.",
        "",
        "| institution | message | replies | records (fields) | bytes |",
        "|---|---|---|---|---|",
    ]
    for name, kinds in log.items():
        for kind, entry in kinds.items():
            records = "; ".join(f"{r}: {', '.join(map(str, d['fields']))}" for r, d in entry["records"].items())
            lines.append(f"| {name} | {kind} | {entry['replies']} | {records} | {entry['bytes']:,} |")
    return lines


def write_model_card(folder: RunFolder, config: Any, result: Any, schema: Any = None) -> None:
    """``model_card.json`` and ``model_card.md`` in the run folder."""
    card = model_card(config, result, schema, folder.model_checkpoint())
    card["disclosure"] = folder.read_disclosure()
    atomic_write(folder.path / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic_write(folder.path / CARD_MD, render_model_card(card))
