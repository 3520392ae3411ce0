"""``consortia run <vertical>``: federated vs centralized vs local-only, printed as a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from consortia.cli.output import console, err_console, friendly_errors, note, parse_pairs
from consortia.data.loaders import check_output_file
from consortia.errors import ConfigError, ConsortiaError
from consortia.logs import set_flower_verbosity


@friendly_errors
def run(
    ctx: typer.Context,
    vertical: Annotated[str, typer.Argument(help="healthcare, finance or manufacturing")],
    institutions: Annotated[int | None, typer.Option(help="number of institutions (default: the vertical's)")] = None,
    rows: Annotated[int | None, typer.Option(help="total synthetic rows (default: the vertical's)")] = None,
    rounds: Annotated[
        int | None, typer.Option(help="federated rounds (default 20; the most for early stopping: mlp 100)")
    ] = None,
    local_epochs: Annotated[int, typer.Option(help="local epochs per round")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="local fine-tuning epochs after federation")] = 2,
    model: Annotated[str | None, typer.Option(help="logistic | mlp | xgboost (default: logistic)")] = None,
    model_param: Annotated[list[str] | None, typer.Option(help="model option key=value (repeatable)")] = None,
    strategy: Annotated[
        str, typer.Option(help="fedavg | fedprox | fedadam | fedyogi | fedmedian | krum ...")
    ] = "fedavg",
    strategy_param: Annotated[
        list[str] | None, typer.Option(help="strategy option key=value, e.g. proximal-mu=0.1")
    ] = None,
    xgb_mode: Annotated[
        str | None, typer.Option(help="--model xgboost: bagging | cyclic (Flower) | histogram (lossless)")
    ] = None,
    fraction_train: Annotated[float, typer.Option(help="share of institutions sampled per round")] = 1.0,
    partition: Annotated[str, typer.Option(help="natural | iid | dirichlet | quantity")] = "natural",
    alpha: Annotated[float, typer.Option(help="skew for dirichlet/quantity (smaller = more skew)")] = 0.5,
    engine: Annotated[str, typer.Option(help="inprocess | ray")] = "inprocess",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto (PyTorch models)")] = "cpu",
    seed: Annotated[int, typer.Option(help="the same seed gives the same numbers")] = 42,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the RunResult JSON here")] = None,
    verbose: Annotated[bool, typer.Option(help="show Flower's own log")] = False,
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="one CSV/Parquet per institution (repeatable)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder with one file per institution")] = None,
    target: Annotated[str | None, typer.Option(help="target column in the files")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="mapping.yaml: file columns/labels -> schema")] = None,
    example: Annotated[str | None, typer.Option(help="a shipped data set (see `consortia examples`)")] = None,
    protocol: Annotated[
        str, typer.Option(help="consortia | flamby (FLamby's Fed-Heart-Disease preprocessing)")
    ] = "consortia",
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default: runs/<vertical>-<time>)")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="continue the run in this folder from its newest readable checkpoint, with its stored settings; "
            "the vertical must match, --rounds may grow, other options that differ are refused"
        ),
    ] = None,
    metric: Annotated[str | None, typer.Option(help="metric of the printed table (default: the vertical's)")] = None,
    dp: Annotated[
        str | None,
        typer.Option("--dp", help="differential privacy: client (protects a whole institution) | sample (one row)"),
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help="--dp: the privacy budget ε for the whole run")] = None,
    delta: Annotated[float | None, typer.Option(help="--dp: δ (default 1e-05)")] = None,
    dp_clip: Annotated[
        float | None, typer.Option(help="--dp: clipping bound of each update (client) or row gradient (sample)")
    ] = None,
    secure_agg: Annotated[
        str | None,
        typer.Option(
            "--secure-agg",
            help="how updates are combined: plain | secagg+ (Flower's SecAgg+: the server sees only sums) | "
            "he (CKKS encryption: the server adds ciphertexts)",
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="the protocol: plain | secured (secure aggregation for every aggregate, DP with --epsilon) | "
            "heterogeneous (FedProx, drop-outs survived)"
        ),
    ] = "plain",
    secagg_range: Annotated[
        float | None, typer.Option(help="--secure-agg secagg+: bound on each update coordinate (default 8)")
    ] = None,
    early_stopping: Annotated[
        bool | None,
        typer.Option(
            "--early-stopping/--no-early-stopping",
            help="keep the best round by federated validation, --rounds being the most (default: on for mlp and "
            "xgboost)",
        ),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="--early-stopping: rounds without a better validation score before it stops (10)")
    ] = None,
    learning_rates: Annotated[
        str | None,
        typer.Option(
            help="try these learning rates first (e.g. 0.003,0.01,0.03), each for 5 rounds; the best by federated "
            "validation trains the run"
        ),
    ] = None,
    audit: Annotated[
        bool, typer.Option("--audit", help="then run `consortia audit` on the run folder (membership inference)")
    ] = False,
    audit_shadows: Annotated[int, typer.Option(help="--audit: shadow models per institution (LiRA)")] = 8,
    audit_max_rows: Annotated[int | None, typer.Option(help="--audit: attack at most N rows per institution")] = None,
    mlflow: Annotated[
        str | None, typer.Option("--mlflow", help="log the run to this MLflow tracking URI, e.g. file:./mlruns")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display (--json implies it)")] = False,
) -> None:
    """Train federated, centralized and local-only models and print the comparison table.

    With --resume FOLDER the run continues from that folder's newest readable checkpoint with its
    stored settings: the vertical must match, --rounds may grow (to train more), --json, --metric
    and --verbose only change the output, and any other option that differs from the stored run
    is refused.
    """
    from consortia.cli.data_options import data_options
    from consortia.config import ExperimentConfig
    from consortia.runs.folder import default_run_dir
    from consortia.verticals import get_vertical

    spec = get_vertical(vertical)
    if resume is not None:
        if any(v is not None for v in (dp, epsilon, delta, dp_clip, secure_agg, secagg_range)) or preset != "plain":
            raise ConfigError(
                "--dp, --epsilon, --delta, --dp-clip, --secure-agg, --secagg-range and --preset cannot change a "
                "stored run; start a new run"
            )
        options = {k: v for k, v in locals().items() if k in _OPTION_FIELDS or k in _DATA_OPTIONS}
        config, notes = _resume(ctx, spec.name, resume, options)
        if config.data.protocol == "flamby":
            metric = metric or "accuracy"
    else:
        data_config, notes = data_options(
            spec.name, files=[str(p) for p in data or []], data_dir=str(data_dir) if data_dir else None,
            target=target, mapping_path=str(map_path) if map_path else None, example=example, protocol=protocol,
        )  # fmt: skip
        model_params = parse_pairs(model_param, "--model-param")
        if protocol == "flamby" and model is None:  # FLamby's model: Linear + sigmoid, Adam, batch 4
            from consortia.data import flamby as flamby_heart

            model, model_params = flamby_heart.MODEL, {**flamby_heart.MODEL_PARAMS, **model_params}
            metric = metric or "accuracy"
        config = ExperimentConfig.build(
            data=data_config,
            run_dir=str(run_dir or default_run_dir(spec.name)),
            vertical=vertical,
            institutions=spec.default_institutions if institutions is None else institutions,
            rows=spec.default_rows if rows is None else rows,
            rounds=rounds,
            local_epochs=local_epochs,
            finetune_epochs=finetune_epochs,
            model=model or "logistic",
            model_params=model_params,
            strategy=strategy,
            strategy_params=parse_pairs(strategy_param, "--strategy-param"),
            xgb_mode=xgb_mode,
            fraction_train=fraction_train,
            partition={"kind": partition, "alpha": alpha},
            engine=engine,
            device=device,
            seed=seed,
            privacy=_privacy_options(dp, epsilon, delta, dp_clip, secure_agg, secagg_range, preset),
            preset=preset,
            selection={
                k: v
                for k, v in {
                    "early_stopping": early_stopping,
                    "patience": patience,
                    "learning_rates": learning_rates,
                }.items()
                if v is not None
            },
        )
        _check_run_dir(Path(str(config.run_dir)))
        if not config.data.files:
            _check_rows(spec, config)
        _check_model(spec, config)
        from consortia.privacy.dp import check_privacy

        check_privacy(config)  # e.g. --dp sample with xgboost: one line before any data is read
        from consortia.federation.secure import check_secure

        check_secure(config)  # e.g. --secure-agg he with krum
    _check_metric(spec, metric)
    if audit and (audit_shadows < 2 or (audit_max_rows is not None and audit_max_rows < 10)):
        raise ConfigError("--audit-shadows must be at least 2 and --audit-max-rows at least 10")
    if json_path is not None:  # before training: a run must not end in a traceback about its output
        inputs = [*config.data.files, *([config.data.mapping_source] if config.data.mapping_source else [])]
        check_output_file(json_path, "--json", inputs, example="result.json")
    set_flower_verbosity(verbose)
    for message in notes:
        note(message)
    if config.data.files:
        from consortia.data.sources import load_data

        if config.data.protocol == "consortia":
            for message in load_data(config, spec).notes:  # validates every file before any training
                note(message)
    if mlflow is not None:
        from consortia.runs.tracking import check_tracking

        mlflow = check_tracking(mlflow)  # before training: a bad URI or no MLflow is one line, not a lost run
    existed = Path(str(config.run_dir)).exists()
    try:
        result = _run_with_progress(config, quiet=quiet or json_path is not None)
    except KeyboardInterrupt:
        _interrupted(config)
    except ConsortiaError:
        if not existed:  # failed before any round: leave no folder that blocks the same --run-dir next time
            _remove_unstarted(Path(str(config.run_dir)))
        raise
    console.print(result.render_table(metric))
    s = result.summary["pooled"]
    console.print(
        f"pooled {result.primary_metric}: federated {s['federated']:.4f} = "
        f"{s['federated'] / s['centralized']:.3f} x centralized; local-only mean {s['local_only_mean']:.4f}; "
        f"{result.timings['total_s']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    console.print(_privacy_footer(result), highlight=False, soft_wrap=True, markup=False)
    _note_rows(spec, config, result)
    audit_values = _audit(Path(str(config.run_dir)), audit_shadows, audit_max_rows) if audit else None
    if json_path is not None:
        written = result.to_dict() if audit_values is None else {**result.to_dict(), "audit": audit_values}
        json_path.write_text(json.dumps(written, indent=2) + "\n")
        extra = ' (the audit under "audit")' if audit_values is not None else ""
        console.print(f"RunResult written to {escape(str(json_path))}{extra}", highlight=False)
    if mlflow is not None:
        from consortia.runs.tracking import track_run

        run_id = track_run(mlflow, result, config.run_dir)
        console.print(f"MLflow run {run_id} logged to {escape(mlflow)}", highlight=False)


def _audit(folder: Path, shadows: int, max_rows: int | None) -> dict[str, Any]:
    """--audit: the membership-inference audit of the finished run, printed and written to audit.json."""
    from consortia.cli.audit import print_report
    from consortia.privacy.audit import audit_run

    with err_console.status("auditing") as status:
        report = audit_run(
            folder, shadows=shadows, max_rows=max_rows,
            on_institution=lambda name: status.update(f"auditing {name}"),
        )  # fmt: skip
    values = print_report(report)
    (folder / "audit.json").write_text(json.dumps(values, indent=2) + "\n")
    console.print(f"audit written to {escape(str(folder / 'audit.json'))}", highlight=False)
    return values


# -- --resume -----------------------------------------------------------------------------------
#: CLI options -> the config field they set; with --resume each must agree with the stored run
_OPTION_FIELDS = {
    "institutions": "institutions", "rows": "rows", "local_epochs": "local_epochs",
    "finetune_epochs": "finetune_epochs", "model": "model", "model_param": "model_params", "strategy": "strategy",
    "strategy_param": "strategy_params", "xgb_mode": "xgb_mode", "fraction_train": "fraction_train",
    "partition": "partition.kind", "alpha": "partition.alpha", "engine": "engine", "device": "device",
    "seed": "seed", "run_dir": "run_dir", "rounds": "rounds",
    "early_stopping": "selection.early_stopping", "patience": "selection.patience",
}  # fmt: skip
#: options that choose the data; with --resume they must name the stored run's data
_DATA_OPTIONS = ("data", "data_dir", "target", "map_path", "example", "protocol")


def _resume(ctx: typer.Context, vertical: str, folder: Path, options: dict[str, Any]):  # -> (config, notes)
    """The stored config of ``folder``, with --rounds applied; options that would change the run refused."""
    from click.core import ParameterSource

    from consortia.config import ExperimentConfig
    from consortia.experiment.recorded import resume_config
    from consortia.runs.folder import RunFolder

    if not folder.is_dir():
        raise ConfigError(f"--resume {folder}: {'is a file, not' if folder.exists() else 'no such'} run folder")
    config = resume_config(folder)
    if config.vertical != vertical:
        raise ConfigError(
            f"--resume {folder} holds a {config.vertical} run, not {vertical}; "
            f"continue it with `consortia run {config.vertical} --resume {folder}`"
        )
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    stored = config.model_dump(mode="json")
    conflicts = [
        c for name, value in given.items() if name not in _DATA_OPTIONS and (c := _conflict(name, value, stored))
    ]
    if any(name in _DATA_OPTIONS for name in given) and _data_differs(vertical, given, stored):
        conflicts.append("the data options (--data, --data-dir, --example, --map, --target, --protocol)")
    if conflicts:
        raise ConfigError(
            f"--resume {folder} continues the stored run; these options differ from it: {', '.join(conflicts)}. "
            "With --resume only --rounds (to train more), --json, --metric and --verbose may change; "
            "start a new run for other settings"
        )
    run = RunFolder(config.run_dir or folder)
    checkpoint = run.latest_checkpoint()
    done = checkpoint.round if checkpoint is not None else 0
    if "rounds" in given and given["rounds"] != config.rounds:
        if given["rounds"] < done:
            raise ConfigError(f"--rounds {given['rounds']}: {folder} has already trained {done} rounds")
        config = ExperimentConfig.build(**{**config.model_dump(), "rounds": given["rounds"]})
    notes = [f"skipped damaged checkpoint {run.checkpoints / entry}" for entry in run.skipped_checkpoints]
    if checkpoint is None:
        notes.append(f"resuming {folder}: no readable checkpoint, so training starts again from round 1")
    elif done < config.rounds:
        notes.append(
            f"resuming {folder} from the checkpoint of round {done}: training rounds {done + 1}-{config.rounds}"
        )
    else:
        notes.append(f"resuming {folder}: all {done} rounds are done, so only evaluating; --rounds N trains more")
    return config, notes


def _conflict(name: str, value: Any, stored: dict[str, Any]) -> str | None:
    """'--option value (stored: x)' when giving ``value`` would change the stored run, else None."""
    from consortia.config import ExperimentConfig

    field = _OPTION_FIELDS[name]
    if field == "rounds":
        return None  # may grow: applied by _resume
    if field == "run_dir":
        same = Path(str(value)).resolve() == Path(str(stored["run_dir"])).resolve()
        return None if same else f"--run-dir {value} (stored: {stored['run_dir']})"
    if field in ("model_params", "strategy_params"):
        value = parse_pairs(value, f"--{name.replace('_', '-')}")
    head, _, tail = field.partition(".")
    changed = {**stored, head: {**stored[head], tail: value} if tail else value}
    try:
        candidate = ExperimentConfig.build(**changed).model_dump(mode="json")
    except ConfigError:
        candidate = None
    if candidate is not None and candidate == stored:
        return None
    current = stored[head][tail] if tail else stored[head]
    shown = ",".join(value) if isinstance(value, list) else value
    return f"--{name.replace('_', '-')} {shown} (stored: {current})"


def _data_differs(vertical: str, given: dict[str, Any], stored: dict[str, Any]) -> bool:
    from consortia.cli.data_options import data_options

    map_path, data_dir = given.get("map_path"), given.get("data_dir")
    data, _ = data_options(
        vertical, files=[str(p) for p in given.get("data") or []], data_dir=str(data_dir) if data_dir else None,
        target=given.get("target"), mapping_path=str(map_path) if map_path else None,
        example=given.get("example"), protocol=given.get("protocol", stored["data"]["protocol"]),
    )  # fmt: skip
    keys = ("files", "target", "mapping", "protocol")
    return any(data.get(k, stored["data"][k]) != stored["data"][k] for k in keys)


# -- differential privacy -----------------------------------------------------------------------
#: --dp values -> the config's mechanism names
_DP_MECHANISMS = {"client": "dp-client", "sample": "dp-sample"}


def _privacy_options(
    dp: str | None,
    epsilon: float | None,
    delta: float | None,
    clip: float | None,
    secure_agg: str | None = None,
    secagg_range: float | None = None,
    preset: str = "plain",
) -> dict:
    """--dp/--epsilon/--delta/--dp-clip/--secure-agg as the config's ``privacy`` settings; bad
    combinations in one line. ``--preset secured --epsilon E`` means client-level DP."""
    aggregation: dict = {}
    if secure_agg is not None:
        value = secure_agg.strip().lower()
        if value not in ("plain", "secagg+", "he"):
            raise ConfigError(f"--secure-agg must be plain, secagg+ or he (got {secure_agg!r})")
        aggregation["aggregation"] = value
    if secagg_range is not None:
        aggregation["secagg_clipping_range"] = secagg_range
    if dp is None and preset == "secured" and epsilon is not None:
        dp = "client"
    return {**_dp_options(dp, epsilon, delta, clip), **aggregation}


def _dp_options(dp: str | None, epsilon: float | None, delta: float | None, clip: float | None) -> dict:
    if dp is None:
        given = [name for name, v in (("--epsilon", epsilon), ("--delta", delta), ("--dp-clip", clip)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --dp client or --dp sample")
        return {}
    mechanism = _DP_MECHANISMS.get(dp.strip().lower())
    if mechanism is None:
        raise ConfigError(f"--dp must be client or sample (got {dp!r})")
    if epsilon is None:
        raise ConfigError(f"--dp {dp} needs --epsilon E, the privacy budget for the whole run (e.g. --epsilon 4)")
    settings: dict = {"mechanism": mechanism, "epsilon": epsilon, "delta": delta}
    if clip is not None:
        settings["clipping_norm" if mechanism == "dp-client" else "max_grad_norm"] = clip
    return settings


def _privacy_footer(result) -> str:  # result: RunResult
    """The table's privacy line: mechanism, ε spent, δ, and what the guarantee covers."""
    p = result.privacy
    if p.get("aggregation", "plain") != "plain":
        secure = f"; aggregation: {p['aggregation']} ({p.get('server_saw', '')})"
    else:
        secure = ""
    if p.get("mechanism", "none") == "none":
        return f"privacy: none ({p.get('protects', 'no differential privacy')}){secure}"
    if p.get("epsilon") is None:
        spent = "ε not accounted (adaptive clipping)"
    else:
        spent = f"ε = {p['epsilon']:.2f}" + (" (max over institutions)" if p["mechanism"] == "dp-sample" else "")
    stopped = ""
    if p.get("rounds_run", 0) < p.get("rounds_planned", 0):
        stopped = f"; budget reached after {p['rounds_run']} of {p['rounds_planned']} rounds"
    return f"privacy: {p['mechanism']}, {spent}, δ = {p['delta']:g}{stopped} — {p.get('protects', '')}{secure}"


# -- checks before training ---------------------------------------------------------------------
def _check_run_dir(path: Path) -> None:
    """A run folder must be (or become) a folder: not a file, nor inside one."""
    for candidate in (path, *path.resolve().parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == path else f"is inside {candidate}, which is a file"
                raise ConfigError(f"--run-dir {path} {what}; give a folder (it is created if missing)")
            return


def _check_rows(spec, config) -> None:  # spec: Vertical, config: ExperimentConfig
    """Refuse --rows the generator would exceed: every institution gets a minimum number of rows."""
    least = len(spec.generate(config.institutions, 0, config.seed))  # every institution at its minimum
    if config.rows < least:
        raise ConfigError(
            f"--rows {config.rows} is too few for {config.institutions} {spec.institution_noun}s: each gets "
            f"at least {least // config.institutions} rows, so --rows must be at least {least} (or use fewer "
            "--institutions)"
        )


def _note_rows(spec, config, result) -> None:
    """Say so when the institutions' minimum size made the run train on more rows than --rows."""
    if config.data.files or config.partition.kind != "natural":
        return
    total = sum(size["train"] + size["test"] for size in result.institution_sizes.values())
    if total > config.rows:
        least = len(spec.generate(config.institutions, 0, config.seed)) // config.institutions
        note(
            f"the {config.institutions} {spec.institution_noun}s hold {total} rows, not --rows {config.rows}: "
            f"each gets at least {least}, so small shares were raised to that"
        )


def _check_metric(spec, metric: str | None) -> None:  # spec: Vertical
    """An unknown --metric would print a table of n/a after the whole run: refuse it first."""
    if metric is None:
        return
    import numpy as np

    y, p = np.array([0, 1] * 4), np.linspace(0.1, 0.9, 8)
    known = sorted(spec.evaluate(y, p, frame=None, train=(y, p)))
    if metric not in known:
        raise ConfigError(f"--metric {metric!r}: the {spec.name} vertical reports {', '.join(known)}")


def _check_model(spec, config) -> None:  # spec: Vertical, config: ExperimentConfig
    """Build the model once so that a bad --model-param or --device fails before any data is read."""
    if config.xgb_mode != "bagging" and config.model != "xgboost":
        raise ConfigError(f"--xgb-mode {config.xgb_mode} applies to --model xgboost only (got --model {config.model})")
    if not config.model_params and config.device == "cpu":
        return  # the defaults are known to build
    from consortia.learners import make_learner

    params = spec.model_params(config.model, config.model_params)
    make_learner(config.model, 2, params, seed=config.seed, device=config.device)  # ConfigError names the option


def _remove_unstarted(folder: Path) -> None:
    """Remove a run folder this command created if it holds only its config (no round was trained)."""
    if not folder.is_dir():
        return
    checkpoints = folder / "checkpoints"
    names = {p.name for p in folder.iterdir()}
    if names - {"config.json", "checkpoints"} or (checkpoints.is_dir() and any(checkpoints.iterdir())):
        return
    if checkpoints.is_dir():
        checkpoints.rmdir()
    (folder / "config.json").unlink(missing_ok=True)
    folder.rmdir()


def _interrupted(config) -> NoReturn:  # config: ExperimentConfig
    """Ctrl-C: one line on how to continue, exit code 130 (128 + SIGINT) as shells expect."""
    from consortia.runs.folder import CONFIG, RunFolder

    folder = Path(str(config.run_dir))
    if (folder / CONFIG).is_file():
        checkpoint = RunFolder(folder).latest_checkpoint()
        done = f"last checkpoint: round {checkpoint.round}" if checkpoint is not None else "no round finished yet"
        err_console.print(
            f"interrupted ({done}); continue with `consortia run {config.vertical} --resume {folder}`",
            highlight=False, soft_wrap=True, markup=False,
        )  # fmt: skip
    else:
        err_console.print("interrupted before the run folder was written: nothing to resume", highlight=False)
    raise typer.Exit(code=130)


def _run_with_progress(config, *, quiet: bool = False):
    from consortia.cli.output import RunProgress
    from consortia.experiment import run_experiment
    from consortia.verticals import get_vertical

    metric = get_vertical(config.vertical).primary_metric
    # no display when stderr is not a terminal (logs, CI, pipes) or with --quiet/--json
    with RunProgress(config.rounds, metric, quiet=quiet) as progress:
        if config.run_dir:
            from consortia.experiment.recorded import run_recorded

            result, folder = run_recorded(config, on_round=progress.on_round)
        else:
            return run_experiment(config, on_round=progress.on_round)
    err_console.print(f"run folder: {folder.path}", highlight=False, markup=False)
    return result
