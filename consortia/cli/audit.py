"""``consortia audit RUN_DIR``: membership inference against a run's global and fine-tuned models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from consortia.cli.output import console, err_console, friendly_errors
from consortia.errors import ConfigError

if TYPE_CHECKING:
    from consortia.privacy.audit import AuditReport

ATTACK_TITLES = {"loss_threshold": "loss", "lira": "LiRA"}
MODEL_TITLES = {"global": "global model", "finetuned": "fine-tuned models (each institution's own)"}


@friendly_errors
def audit(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run`")],
    json_path: Annotated[Path | None, typer.Option("--json", help="write the audit as JSON here")] = None,
    shadows: Annotated[int, typer.Option(help="shadow models per institution for the LiRA attack")] = 8,
    max_rows: Annotated[
        int | None, typer.Option(help="attack at most N rows per institution (seeded subsample, member share kept)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the audit's draws (default: the run's seed)")] = None,
) -> None:
    """Membership-inference audit: can an attacker tell an institution's training rows from its test rows?"""
    from consortia.privacy.audit import audit_run

    if json_path is not None:
        check_output_path(json_path)
    with err_console.status("auditing") as status:
        report = audit_run(
            run_dir, shadows=shadows, max_rows=max_rows, seed=seed,
            on_institution=lambda name: status.update(f"auditing {name}"),
        )  # fmt: skip
    values = print_report(report)
    if json_path is not None:
        json_path.write_text(json.dumps(values, indent=2) + "\n")
        console.print(f"audit written to {json_path}", highlight=False)


def print_report(report: AuditReport) -> dict[str, Any]:
    """Print the audit's tables, its summary line and notes; return ``report.to_dict()``."""
    values = report.to_dict()
    for model in ("global", "finetuned"):
        console.print(render_table(values, model))
    lira = values["attacks"]["lira"]
    console.print(
        f"global model, pooled: LiRA AUROC {_num(lira['auroc'])} (0.5 = chance), "
        f"TPR at 1 % FPR {_num(lira['tpr_at_1pct_fpr'])}; privacy mechanism: {values['privacy']}; "
        f"{values['members']} members, {values['non_members']} non-members, {report.shadows} shadows; "
        f"{report.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    for message in report.notes:
        console.print(f"note: {message}", highlight=False, soft_wrap=True)
    return values


def check_output_path(path: Path) -> None:
    """Refuse an unwritable --json target before minutes of attacking, not after."""
    if path.is_dir():
        raise ConfigError(f"--json {path} is a folder; give a file name such as {path / 'audit.json'}")
    if not path.parent.is_dir():
        raise ConfigError(f"--json {path}: the folder {path.parent} does not exist")


def render_table(values: dict[str, Any], model: str) -> Table:
    """One row per institution and a pooled row: each attack's AUROC and TPR at 1 % FPR."""
    table = Table(
        title=f"membership inference: {MODEL_TITLES[model]}",
        caption="AUROC 0.5 = chance; TPR@1%: members found at 1 % false-positive rate",
    )
    table.add_column("institution", no_wrap=True)
    for column in ("members", "non-\nmembers"):
        table.add_column(column, justify="right")
    for title in ATTACK_TITLES.values():
        table.add_column(f"{title}\nAUROC", justify="right")
        table.add_column(f"{title}\nTPR@1%", justify="right")
    rows = [*values["models"][model].items(), ("pooled", values["pooled"][model])]
    for i, (name, entry) in enumerate(rows):
        cells = [str(entry["members"]), str(entry["non_members"])]
        for attack in ATTACK_TITLES:
            cells += [_num(entry[attack]["auroc"]), _num(entry[attack]["tpr_at_1pct_fpr"])]
        table.add_row(name, *cells, end_section=i == len(rows) - 2)
    return table


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
