"""``report.html``: one self-contained page per run folder, for people who were not at the terminal.

Sections: summary, rounds (the metric after every round), per-institution comparison (local-only,
federated, fine-tuned, centralized), data (rows and label rate per institution), privacy (the
result's privacy record) and cost (timings). Charts are PNGs drawn with matplotlib's Agg canvas
(no pyplot, no global backend change) and embedded as base64, so the page is one file that
opens anywhere, offline. Everything comes from ``result.json`` (the RunResult) plus, when the
caller knows them, each institution's label rates (a RunResult holds sizes only).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consortia.errors import ConfigError
from consortia.runs.folder import RESULT, atomic_write
from consortia.runs.results import MODE_TITLES, MODES

REPORT = "report.html"
#: one colour per mode, the same in every chart
COLOURS = {"local_only": "#9e9e9e", "federated": "#1f77b4", "federated_finetuned": "#2ca02c", "centralized": "#ff7f0e"}
SECTIONS = ("Summary", "Rounds", "Per-institution comparison", "Data", "Privacy", "Cost")
#: per institution: {"train": share of positive labels in its training rows, "test": ...}
LabelRates = Mapping[str, Mapping[str, float]]


def write_report(run_dir: str | Path, result: Any = None, *, label_rates: LabelRates | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` from ``result`` (a RunResult or its dict; default: result.json)."""
    folder = Path(run_dir)
    data = _result_dict(folder, result)
    path = folder / REPORT
    atomic_write(path, render_html(data, label_rates))
    return path


def _result_dict(folder: Path, result: Any) -> dict[str, Any]:
    if result is not None:
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)
    return read_result(folder)


def read_result(folder: str | Path) -> dict[str, Any]:
    """``RUN_DIR/result.json`` as a dict, refused in one line if absent or not a RunResult."""
    file = Path(folder) / RESULT
    if not file.is_file():
        raise ConfigError(f"{folder} has no {RESULT} (the run did not finish); nothing to report")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: unreadable result ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "per_institution" not in data:
        raise ConfigError(f"{file}: not a Consortia RunResult")
    return data


# -- the page -----------------------------------------------------------------------------------
def render_html(data: Mapping[str, Any], label_rates: LabelRates | None = None) -> str:
    """The whole page as one string (charts inline)."""
    config, metric = data.get("config", {}), data["primary_metric"]
    noun = data.get("institution_noun", "institution")
    title = (
        f"{data['vertical']}: {config.get('model', '?')} with {config.get('strategy', '?')}, "
        f"{len(data['per_institution'])} {noun}s, {config.get('rounds', '?')} rounds"
    )
    parts = [f"<h1>{_e(title)}</h1>", f"<p class='muted'>seed {_e(config.get('seed'))}, engine "
             f"{_e(config.get('engine'))}; metric: {_e(metric)}</p>"]  # fmt: skip
    parts += _summary(data, metric)
    parts += _rounds(data, metric)
    parts += _institutions(data, metric, noun)
    parts += _data(data, noun, label_rates)
    parts += _privacy(data)
    parts += _cost(data)
    if data.get("notes"):
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{_e(n)}</li>" for n in data["notes"]), "</ul>"]
    return _PAGE.format(title=_e(title), body="\n".join(parts))


def _summary(data: Mapping[str, Any], metric: str) -> list[str]:
    pooled = data.get("pooled", {})
    rows = [[MODE_TITLES[m], _num(pooled.get(m, {}).get(metric))] for m in MODES]
    return ["<h2>Summary</h2>", f"<p>Pooled {_e(metric)} on the union of the test splits "
            "(local-only: mean over institutions of each local model on all test rows).</p>",
            _table(["mode", f"pooled {metric}"], rows)]  # fmt: skip


def _rounds(data: Mapping[str, Any], metric: str) -> list[str]:
    out = ["<h2>Rounds</h2>"]
    rounds = data.get("rounds") or []
    if not rounds:
        return [*out, "<p>No round history in this run.</p>"]
    out.append(_img(rounds_figure(data, metric), f"{metric} after each round"))
    keys = [k for k in (f"pooled.{metric}", metric, "privacy.epsilon") if any(k in r["metrics"] for r in rounds)]
    rows = [[r["round"], *(_num(r["metrics"].get(k)) for k in keys), f"{r.get('seconds', 0.0):.3f}"] for r in rounds]
    return [*out, _table(["round", *keys, "seconds"], rows)]


def _institutions(data: Mapping[str, Any], metric: str, noun: str) -> list[str]:
    per = data["per_institution"]
    rows = [[name, *(_num(modes.get(m, {}).get(metric)) for m in MODES)] for name, modes in per.items()]
    pooled = data.get("pooled", {})
    rows.append(["<b>pooled</b>", *(_num(pooled.get(m, {}).get(metric)) for m in MODES)])
    return [
        "<h2>Per-institution comparison</h2>",
        f"<p>{_e(metric)} on each {_e(noun)}'s own test split.</p>",
        _img(institutions_figure(data, metric), f"{metric} per {noun} and mode"),
        _table([noun, *(MODE_TITLES[m] for m in MODES)], rows, raw_first=True),
    ]


def _data(data: Mapping[str, Any], noun: str, label_rates: LabelRates | None) -> list[str]:
    sizes = data.get("institution_sizes", {})
    total = sum(s.get("train", 0) + s.get("test", 0) for s in sizes.values()) or 1
    header = [noun, "train rows", "test rows", "share of all rows"]
    if label_rates:
        header += ["label rate (train)", "label rate (test)"]
    rows = []
    for name, size in sizes.items():
        row = [
            name,
            size.get("train", 0),
            size.get("test", 0),
            f"{(size.get('train', 0) + size.get('test', 0)) / total:.1%}",
        ]
        if label_rates:
            rates = label_rates.get(name, {})
            row += [_pct(rates.get("train")), _pct(rates.get("test"))]
        rows.append(row)
    out = ["<h2>Data</h2>", f"<p>{len(sizes)} {_e(noun)}s, {total} rows in all.</p>"]
    if sizes:
        out.append(_img(data_figure(data, label_rates), f"rows per {noun}"))
    if not label_rates:
        out.append("<p class='muted'>Label rates unknown here (the run's data could not be read).</p>")
    return [*out, _table(header, rows)]


def _privacy(data: Mapping[str, Any]) -> list[str]:
    privacy = data.get("privacy") or data.get("summary", {}).get("privacy") or {}
    rows = [[_e(key), _e(_plain(value))] for key, value in privacy.items()]
    return ["<h2>Privacy</h2>", _table(["", "value"], rows, escape=False)]


def _cost(data: Mapping[str, Any]) -> list[str]:
    timings = data.get("timings", {})
    rounds = data.get("rounds") or []
    out = ["<h2>Cost</h2>"]
    if timings:
        out.append(_img(cost_figure(data), "seconds per phase"))
    rows = [
        [key.removesuffix("_s"), f"{value:.3f}"] for key, value in timings.items() if isinstance(value, int | float)
    ]
    if rounds:
        per_round = sum(r.get("seconds", 0.0) for r in rounds) / len(rounds)
        rows.append(["mean per round", f"{per_round:.3f}"])
    budget = data.get("budget") or {}
    out.append(_table(["phase", "seconds"], rows))
    if budget:
        sizes = [[MODE_TITLES.get(m, m), ", ".join(f"{v:g} {k}" for k, v in b.items())] for m, b in budget.items()]
        out += ["<p>Model size per mode:</p>", _table(["mode", "size"], sizes)]
    return out


# -- charts ---------------------------------------------------------------------------------------
def _figure(
    width: float = 7.0, height: float = 3.4, *, left: float = 0.8, right: float = 0.3, bottom: float = 0.6,
    top: float = 0.4, wspace: float = 0.2, hspace: float = 0.2,
):  # fmt: skip
    """A figure on its own Agg canvas, margins in inches (fixed margins: a layout engine triples the cost)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
        wspace=wspace, hspace=hspace,
    )  # fmt: skip
    return figure


def plot_rounds(ax, data: Mapping[str, Any], metric: str) -> None:
    rounds = data.get("rounds") or []
    xs = [r["round"] for r in rounds]
    for key, label, style in ((f"pooled.{metric}", "federated (pooled)", "-"), (metric, "federated (mean)", ":")):
        ys = [r["metrics"].get(key, math.nan) for r in rounds]
        if any(_finite(y) for y in ys):
            ax.plot(xs, ys, style, marker="o", ms=3, color=COLOURS["federated"], label=label)
    pooled = data.get("pooled", {})
    for mode in ("centralized", "local_only"):
        value = pooled.get(mode, {}).get(metric)
        if _finite(value):
            ax.axhline(value, ls="--", lw=1, color=COLOURS[mode], label=f"{MODE_TITLES[mode]} (pooled)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} after each round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


#: above this many institutions, charts show dots in sorted order instead of one labelled bar group each
MANY = 30


def plot_institutions(ax, data: Mapping[str, Any], metric: str) -> None:
    names = list(data["per_institution"])
    if len(names) > MANY:
        return _plot_many_institutions(ax, data, metric, names)
    width = 0.8 / len(MODES)
    for i, mode in enumerate(MODES):
        ys = [data["per_institution"][n].get(mode, {}).get(metric) for n in names]
        ys = [y if _finite(y) else 0.0 for y in ys]
        ax.bar(
            [j + (i - 1.5) * width for j in range(len(names))], ys, width, color=COLOURS[mode], label=MODE_TITLES[mode]
        )
    ax.set_xticks(
        range(len(names)),
        names,
        rotation=30 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
        fontsize=7,
    )
    values = [v for m in data["per_institution"].values() for mm in m.values() if _finite(v := mm.get(metric))]
    if values and min(values) > 0:
        ax.set_ylim(max(0.0, min(values) - 0.1 * (max(values) - min(values) + 0.05)), max(values) * 1.02)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per {data.get('institution_noun', 'institution')}")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)


def _plot_many_institutions(ax, data: Mapping[str, Any], metric: str, names: list[str]) -> None:
    """Many institutions: each mode's metric as dots, institutions sorted by the federated model's metric."""
    per = data["per_institution"]

    def value(name: str, mode: str) -> float:
        v = per[name].get(mode, {}).get(metric)
        return float(v) if _finite(v) else math.nan

    order = sorted(names, key=lambda n: (math.isnan(value(n, "federated")), value(n, "federated")))
    for mode in MODES:
        ax.plot(range(len(order)), [value(n, mode) for n in order], "o", ms=2.5, color=COLOURS[mode],
                label=MODE_TITLES[mode], alpha=0.8)  # fmt: skip
    noun = data.get("institution_noun", "institution")
    ax.set_xlabel(f"{len(names)} {noun}s, sorted by the federated model's {metric}")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per {noun}")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)


def plot_data(ax, data: Mapping[str, Any], label_rates: LabelRates | None = None) -> None:
    sizes = data.get("institution_sizes", {})
    names = list(sizes)
    if len(names) > MANY:  # sorted by size, unlabelled: the shape of the federation, not each name
        names = sorted(names, key=lambda n: sizes[n].get("train", 0) + sizes[n].get("test", 0), reverse=True)
    train = [sizes[n].get("train", 0) for n in names]
    test = [sizes[n].get("test", 0) for n in names]
    xs = range(len(names))  # positions, not category names: matplotlib's string axes are slow for many
    ax.bar(xs, train, color="#4c72b0", label="train")
    ax.bar(xs, test, bottom=train, color="#a6bddb", label="test")
    ax.set_ylim(0, max([a + b for a, b in zip(train, test, strict=True)] + [1]) * 1.2)  # room for the legends
    ax.set_ylabel("rows")
    ax.set_title(f"rows per {data.get('institution_noun', 'institution')}")
    if len(names) <= MANY:
        tilt = len(names) > 4
        ax.set_xticks(xs, names, fontsize=7, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} {data.get('institution_noun', 'institution')}s, largest first")
    if label_rates:
        twin = ax.twinx()
        rates = [label_rates.get(n, {}).get("train", math.nan) for n in names]
        twin.plot(xs, [100 * r for r in rates], "o", color="#d62728", label="label rate (train)")
        twin.set_ylabel("label rate (%)")
        twin.set_ylim(0, max([100 * r for r in rates if _finite(r)] + [1.0]) * 1.3)
        twin.legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="upper left")


def plot_cost(ax, data: Mapping[str, Any]) -> None:
    timings = {k: v for k, v in data.get("timings", {}).items() if k != "total_s" and isinstance(v, int | float)}
    names = [k.removesuffix("_s") for k in timings]
    ax.barh(names, list(timings.values()), color="#8172b2")
    total = data.get("timings", {}).get("total_s")
    ax.set_xlabel("seconds")
    ax.set_title(f"time per phase (total {total:.1f} s)" if _finite(total) else "time per phase")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def rounds_figure(data: Mapping[str, Any], metric: str):
    figure = _figure()
    plot_rounds(figure.add_subplot(), data, metric)
    return figure


def institutions_figure(data: Mapping[str, Any], metric: str):
    many = len(data["per_institution"]) > 4
    figure = _figure(min(12.0, max(7.0, 0.6 * len(data["per_institution"]))), 3.6, bottom=1.0 if many else 0.6)
    plot_institutions(figure.add_subplot(), data, metric)
    return figure


def data_figure(data: Mapping[str, Any], label_rates: LabelRates | None = None):
    many = len(data.get("institution_sizes", {})) > 4
    figure = _figure(min(12.0, max(7.0, 0.5 * len(data.get("institution_sizes", {})))), 3.4, right=0.8,
                     bottom=1.0 if many else 0.6)  # fmt: skip
    plot_data(figure.add_subplot(), data, label_rates)
    return figure


def cost_figure(data: Mapping[str, Any]):
    figure = _figure(7.0, 0.4 * max(3, len(data.get("timings", {}))) + 1.2, left=1.7)
    plot_cost(figure.add_subplot(), data)
    return figure


def overview_png(data: Mapping[str, Any], label_rates: LabelRates | None = None) -> bytes:
    """The report's four charts on one PNG (the picture README shows)."""
    figure = _figure(12.0, 8.0, left=0.8, right=0.8, bottom=1.0, top=0.7, wspace=0.45, hspace=0.45)
    axes = figure.subplots(2, 2)
    metric = data["primary_metric"]
    plot_rounds(axes[0][0], data, metric)
    plot_institutions(axes[0][1], data, metric)
    plot_data(axes[1][0], data, label_rates)
    plot_cost(axes[1][1], data)
    figure.suptitle(f"{data['vertical']}: {data.get('config', {}).get('model', '')} report", fontsize=11)
    return _png(figure)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _img(figure, alt: str) -> str:
    encoded = base64.b64encode(_png(figure)).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{encoded}'>"


# -- HTML helpers ---------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _num(value: Any) -> str:
    return f"{value:.4f}" if _finite(value) else "n/a"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if _finite(value) else "n/a"


def _plain(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _table(header: list[Any], rows: list[list[Any]], *, escape: bool = True, raw_first: bool = False) -> str:
    def cell(i: int, value: Any) -> str:
        text = str(value) if (not escape or (raw_first and i == 0 and str(value).startswith("<b>"))) else _e(value)
        return f"<td>{text}</td>"

    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
.muted {{ color: #666; }}
</style></head>
<body>
{body}
</body></html>
"""
