"""Transfer to a new institution: start from the consortium's model, or train alone?

A newcomer (a hospital joining after the federation trained) has its own rows but labels only
a few of them. ``transfer_curve`` answers what the consortium is worth to it: for each label
budget and several seeds it

* draws the labelled rows (stratified, so both classes appear; nested across budgets within a
  seed, so a curve grows by adding rows, not by redrawing them) from the newcomer's rows outside
  a held-out test split (stratified, fixed per seed);
* **from consortium**: loads the run's global model (the newest checkpoint, and the preprocessor
  the institutions agreed on, as ``consortia predict`` does) and continues training it on those
  rows: logistic and PyTorch learners continue from the global parameters, XGBoost keeps boosting
  from the global booster; ``method="head"`` (MLP only) freezes the hidden layers and trains the
  output layer alone (a frozen-feature head);
* **alone**: the same learner from scratch on the same rows, behind the newcomer's own feature
  statistics (from all its non-test rows: features need no labels), with the run's local-only
  budget (``rounds x local_epochs`` epochs, or as many trees);
* scores both on the held-out split with the vertical's primary metric.

``as_is`` (per seed) is the consortium model untouched on the same test rows: what 0 labels buy.
The newcomer's file goes through the run's own mapping and the vertical's schema checks
(``consortia.data.loaders.load_file``), so a missing column or an unseen category is one clear
error naming the file and the column.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.institutions import institution_seed
from consortia.data.loaders import load_file
from consortia.data.preprocessing import FeatureSummary, Preprocessor, merge_summaries
from consortia.data.schema import TabularSchema
from consortia.data.sources import mapping_of
from consortia.data.split import stratified_split
from consortia.errors import ConfigError, DataValidationError
from consortia.experiment.baselines import training_budget
from consortia.learners import Learner, make_learner
from consortia.runs.folder import RunFolder
from consortia.verticals import Vertical, get_vertical

DEFAULT_LABELS = (10, 25, 50, 100, 200)
METHODS = ("finetune", "head")
#: files ``write_outputs`` puts into the output folder
CURVE_PNG = "transfer_curve.png"
RESULT_JSON = "transfer.json"


# ---------------------------------------------------------------------------------------------
# the consortium's model
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConsortiumModel:
    """A run's global model: its config, the newest checkpoint's parameters and the agreed preprocessor."""

    config: ExperimentConfig
    parameters: list[np.ndarray]
    preprocessor: Preprocessor
    round: int
    run_dir: str = ""

    @classmethod
    def from_run(cls, run_dir: str | Path, on_note: Callable[[str], None] | None = None) -> ConsortiumModel:
        folder = RunFolder(run_dir)
        config = folder.read_config()
        if config.data.protocol == "flamby":
            raise ConfigError("runs with --protocol flamby normalise per centre and cannot start a new institution")
        checkpoint = folder.model_checkpoint()
        if checkpoint is None:
            raise ConfigError(f"{folder.path} has no readable checkpoint to start a new institution from")
        for skipped in folder.skipped_checkpoints:
            (on_note or (lambda m: None))(f"skipped damaged checkpoint {skipped}; using round {checkpoint.round}")
        return cls(config, checkpoint.parameters, checkpoint.preprocessor, checkpoint.round, str(folder.path))

    def learner(self, vertical: Vertical) -> Learner:
        """A fresh learner holding the global parameters."""
        learner = _make(self.config, vertical, self.preprocessor.n_features, self.config.seed)
        learner.set_parameters([np.array(p, copy=True) for p in self.parameters])
        return learner


def _make(config: ExperimentConfig, vertical: Vertical, n_features: int, seed: int) -> Learner:
    params = vertical.model_params(config.model, config.model_params)
    return make_learner(config.model, n_features, params, seed=seed, device=config.device)


# ---------------------------------------------------------------------------------------------
# settings and results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferSettings:
    """How the curve is measured; ``None`` means "as the run did" (see the module docstring)."""

    labels: tuple[int, ...] = DEFAULT_LABELS
    seeds: int = 3
    method: Literal["finetune", "head"] = "finetune"
    #: epochs of fine-tuning from the consortium model (XGBoost: boosting rounds x trees_per_epoch);
    #: None = the run's own ``finetune_epochs``; 0 = the consortium model as it is
    finetune_epochs: int | None = None
    #: epochs (or boosting rounds) for the newcomer alone; None = the run's local-only budget
    alone_epochs: int | None = None
    #: share of the newcomer's rows held out for testing; None = the run's ``test_fraction``
    test_fraction: float | None = None
    #: how strongly fine-tuning is pulled back to the consortium's parameters: an L2 penalty
    #: ``strength / 2 x ||theta - theta_global||^2`` on the summed loss (worth about that many rows;
    #: the learners' FedProx term, ``proximal_mu = strength / labels``); 0 = plain fine-tuning.
    #: Not for XGBoost (trees have no such anchor: its budget is the number of new trees)
    prior_strength: float = 20.0

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        if not labels:
            raise ConfigError("--labels needs at least one label budget, e.g. --labels 10,25,50")
        if any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in labels):
            raise ConfigError(f"--labels must be whole numbers (got {', '.join(map(repr, labels))})")
        if min(labels) < 2:
            raise ConfigError(f"--labels must each be at least 2 (one row of each class); got {min(labels)}")
        object.__setattr__(self, "labels", tuple(sorted({int(n) for n in labels})))
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"--seeds must be a whole number >= 1 (got {self.seeds!r})")
        if self.method not in METHODS:
            raise ConfigError(f"--method must be {' or '.join(METHODS)} (got {self.method!r})")
        for name in ("finetune_epochs", "alone_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be a whole number >= 0 (got {value!r})")
        if self.alone_epochs == 0:
            raise ConfigError("alone_epochs must be at least 1 (a model trained for 0 epochs learned nothing)")
        if isinstance(self.prior_strength, bool) or not (
            isinstance(self.prior_strength, int | float) and 0 <= self.prior_strength < float("inf")
        ):
            raise ConfigError(f"prior_strength must be a number >= 0 (got {self.prior_strength!r})")
        if self.test_fraction is not None and not 0 < self.test_fraction < 0.9:
            raise ConfigError(f"test_fraction must be in (0, 0.9) (got {self.test_fraction!r})")


@dataclass(frozen=True)
class TransferPoint:
    """One budget and seed: both models' primary metric on that seed's held-out rows."""

    labels: int
    seed: int
    positives: int
    consortium: float
    alone: float


@dataclass
class TransferResult:
    """The learning curve: every (budget, seed) point, the untouched consortium model per seed."""

    vertical: str
    metric: str
    model: str
    method: str
    labels: list[int]
    seeds: int
    finetune_epochs: int
    alone_epochs: int
    data: str
    run_dir: str
    rows: int
    test_rows: int
    points: list[TransferPoint] = field(default_factory=list)
    #: per seed: the consortium model with no newcomer labels at all, on that seed's test rows
    as_is: list[float] = field(default_factory=list)
    #: per seed: the file's data rows (counted from 1, header excluded) held out for testing
    test_split: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0

    def curve(self) -> list[dict[str, float]]:
        """Per budget: mean and standard deviation over seeds of both modes."""
        out = []
        for n in self.labels:
            own = [p for p in self.points if p.labels == n]
            c = np.array([p.consortium for p in own], dtype=float)
            a = np.array([p.alone for p in own], dtype=float)
            out.append(
                {
                    "labels": float(n),
                    "consortium_mean": float(np.nanmean(c)),
                    "consortium_std": float(np.nanstd(c)),
                    "alone_mean": float(np.nanmean(a)),
                    "alone_std": float(np.nanstd(a)),
                }
            )
        return out

    def mean(self, mode: Literal["consortium", "alone"], labels: int) -> float:
        """The curve's mean for one mode at one budget (KeyError if the budget was not measured)."""
        for row in self.curve():
            if row["labels"] == labels:
                return row[f"{mode}_mean"]
        raise KeyError(f"label budget {labels} was not measured (measured: {self.labels})")

    def table_markdown(self) -> str:
        """labels x {from consortium, alone}: mean ± std over seeds, plus the 0-label row."""
        metric = self.metric.upper() if len(self.metric) <= 5 else self.metric
        start = "from consortium (head)" if self.method == "head" else "from consortium"
        lines = [
            f"| labels | {start} {metric} | alone {metric} |",
            "|---:|---:|---:|",
            f"| 0 | {np.mean(self.as_is):.4f} ± {np.std(self.as_is):.4f} | |",
        ]
        lines += [
            f"| {row['labels']:.0f} | {row['consortium_mean']:.4f} ± {row['consortium_std']:.4f} "
            f"| {row['alone_mean']:.4f} ± {row['alone_std']:.4f} |"
            for row in self.curve()
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"curve": self.curve()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=float)


# ---------------------------------------------------------------------------------------------
# the newcomer's rows
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Newcomer:
    """The newcomer's validated rows (file order) and the schema its columns support."""

    frame: pd.DataFrame
    schema: TabularSchema
    source: str
    notes: list[str]


def load_newcomer(model: ConsortiumModel, data: str | Path) -> Newcomer:
    """The file through the run's mapping and the vertical's schema, checked against the model's inputs."""
    config = model.config
    vertical = get_vertical(config.vertical)
    loaded = load_file(
        data, vertical.schema, mapping_of(config), target=config.data.target, min_rows=4, allow_undeclared=True
    )
    source = str(data)
    pre = model.preprocessor
    needed = list(pre.numeric) + list(pre.categories)
    lacking = [c for c in needed if c not in loaded.frame.columns]
    if lacking:
        raise DataValidationError(
            f"the consortium's model needs column(s) {', '.join(lacking)} that this file does not have "
            f"(after the run's mapping); the model's inputs: {', '.join(needed)}",
            source=source,
            column=lacking[0],
        )
    for column, vocab in pre.categories.items():
        values = loaded.frame[column]
        unseen = values.notna() & ~values.astype(str).isin(vocab)
        if unseen.any():
            shown = ", ".join(map(repr, values[unseen].unique()[:3]))
            raise DataValidationError(
                f"has categories the consortium's model never saw ({shown}); known: {', '.join(vocab)}",
                source=source, column=column, rows=list(np.flatnonzero(unseen.to_numpy()) + 1),
            )  # fmt: skip
    target = loaded.schema.target
    counts = loaded.frame[target].value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "none"
        raise DataValidationError(
            f"holds a single class of '{target}' (all {only}); transfer needs both classes to label and to test",
            source=source,
            column=target,
        )
    return Newcomer(loaded.frame.reset_index(drop=True), loaded.schema, source, list(loaded.notes))


def label_order(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded random order of the rows: budgets take prefixes, so their sets nest."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))


def draw_labels(y: np.ndarray, budget: int, order: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``budget`` row indices with the pool's label rate, at least one row of each class."""
    positives, negatives = order
    n_pos = int(np.clip(round(budget * len(positives) / len(y)), 1, budget - 1))
    n_pos = min(n_pos, len(positives))
    n_neg = budget - n_pos
    if n_neg > len(negatives):  # few negatives (a high label rate): take more positives instead
        n_neg, n_pos = len(negatives), budget - len(negatives)
    return np.sort(np.concatenate([positives[:n_pos], negatives[:n_neg]]))


def _check_budgets(labels: Sequence[int], rows: int, pool: int, test_fraction: float, source: str) -> None:
    too_many = [n for n in labels if n > pool]
    if too_many:
        raise ConfigError(
            f"--labels {max(too_many)}: {source} has {rows} rows, of which {pool} can be labelled "
            f"(the other {rows - pool}, {test_fraction:.0%}, are the held-out test split); "
            f"use budgets up to {pool} or a larger file"
        )


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def freeze_features(learner: Learner, model: str = "") -> None:
    """Leave only the output layer trainable (the MLP's frozen-feature head)."""
    module = learner.torch_module() if hasattr(learner, "torch_module") else None
    hidden = getattr(module, "hidden", None)
    if module is None or hidden is None or not hasattr(module, "out"):
        raise ConfigError(
            f"method 'head' trains the output layer of an MLP on frozen features; this run's model is "
            f"'{model or type(learner).__name__}': use method 'finetune' or a run with --model mlp"
        )
    for parameter in hidden.parameters():
        parameter.requires_grad_(False)


def fine_tune(learner: Learner, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, strength: float) -> None:
    """Continue training ``learner`` (holding the consortium's parameters) on the newcomer's rows,
    anchored to where it started so that ten labels cannot erase what the consortium learned."""
    if epochs <= 0:
        return
    if strength and getattr(learner, "supports_proximal", False):
        learner.fit(X, y, epochs=epochs, seed=seed, proximal_mu=strength / len(y))
    elif strength and hasattr(learner, "coef") and hasattr(learner, "intercept"):
        _anchored_logistic(learner, X, y, epochs=epochs, strength=strength)
    else:  # XGBoost: more trees on top of the global booster
        learner.fit(X, y, epochs=epochs, seed=seed)


def _anchored_logistic(learner: Any, X: np.ndarray, y: np.ndarray, *, epochs: int, strength: float) -> None:
    """scikit-learn's logistic learner has no proximal term: the same objective it minimises
    (summed log loss, class weights as it sets them) with the pull to the start instead of its
    pull to zero, by L-BFGS for ``epochs`` iterations (one epoch = one solver iteration, as there)."""
    from scipy.optimize import minimize

    from consortia.learners.base import balanced_positive_weight

    X = np.asarray(X, dtype=np.float64)
    weights = np.where(y == 1, balanced_positive_weight(y), 1.0) if learner.class_weight == "balanced" else 1.0
    start = np.concatenate(learner.get_parameters()).astype(np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = X @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -35, 35)))
        loss = np.sum(weights * (np.logaddexp(0.0, logits) - y * logits))
        residual = weights * (p - y)
        grad = np.concatenate([X.T @ residual, [residual.sum()]])
        diff = theta - start
        return float(loss + 0.5 * strength * diff @ diff), grad + strength * diff

    solved = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": int(epochs)})
    learner.set_parameters([solved.x[:-1], solved.x[-1:]])


def _evaluate(
    vertical: Vertical, learner: Learner, pre: Preprocessor, test: pd.DataFrame, train: pd.DataFrame, target: str
) -> float:
    y = test[target].to_numpy(dtype=int)
    scores = learner.predict_proba(pre.transform(test))
    own = (train[target].to_numpy(dtype=int), learner.predict_proba(pre.transform(train))) if len(train) else None
    metrics = vertical.evaluate(y, scores, frame=test, train=own if vertical.tunes_on_train else None)
    return float(metrics.get(vertical.primary_metric, float("nan")))


def transfer_curve(
    run: ConsortiumModel | str | Path,
    data: str | Path,
    settings: TransferSettings | None = None,
    *,
    on_point: Callable[[TransferPoint], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TransferResult:
    """The newcomer's learning curve, from the consortium's model versus alone (see the module docstring)."""
    started = time.perf_counter()
    settings = settings or TransferSettings()
    model = run if isinstance(run, ConsortiumModel) else ConsortiumModel.from_run(run, on_note=on_note)
    config = model.config
    vertical = get_vertical(config.vertical)
    if settings.method == "head":
        freeze_features(model.learner(vertical), config.model)  # refuse a non-MLP run before any data is read
    newcomer = load_newcomer(model, data)
    for message in newcomer.notes:
        (on_note or (lambda m: None))(message)
    target = newcomer.schema.target
    frame = newcomer.frame
    test_fraction = settings.test_fraction if settings.test_fraction is not None else config.test_fraction
    n_test = int(np.ceil(test_fraction * len(frame)))
    _check_budgets(settings.labels, len(frame), len(frame) - n_test, test_fraction, newcomer.source)
    finetune = config.finetune_epochs if settings.finetune_epochs is None else settings.finetune_epochs
    alone_epochs = settings.alone_epochs or training_budget(config)
    result = TransferResult(
        vertical=vertical.name, metric=vertical.primary_metric, model=config.model, method=settings.method,
        labels=list(settings.labels), seeds=settings.seeds, finetune_epochs=finetune, alone_epochs=alone_epochs,
        data=newcomer.source, run_dir=model.run_dir, rows=len(frame), test_rows=n_test,
    )  # fmt: skip
    indexed = frame.assign(__row__=np.arange(1, len(frame) + 1))
    for s in range(settings.seeds):
        seed = institution_seed(config.seed, "transfer", s)
        pool, test = stratified_split(indexed, target, n_test / len(frame), seed, source=newcomer.source)
        result.test_split.append(sorted(int(r) for r in test["__row__"]))
        pool, test = pool.drop(columns="__row__"), test.drop(columns="__row__")
        # the newcomer alone knows only its own feature statistics (labels are not needed for them)
        own = merge_summaries([FeatureSummary.from_frame(pool, newcomer.schema)], newcomer.schema)
        empty = pool.iloc[:0]
        result.as_is.append(_evaluate(vertical, model.learner(vertical), model.preprocessor, test, empty, target))
        y_pool = pool[target].to_numpy(dtype=int)
        order = label_order(y_pool, seed)
        for budget in settings.labels:
            labelled = pool.iloc[draw_labels(y_pool, budget, order)]
            X_c, y = model.preprocessor.transform(labelled), labelled[target].to_numpy(dtype=int)
            fit_seed = institution_seed(config.seed, "transfer-fit", s, budget)
            start = model.learner(vertical)
            if settings.method == "head":
                freeze_features(start)
            fine_tune(start, X_c, y, epochs=finetune, seed=fit_seed, strength=settings.prior_strength)
            alone = _make(config, vertical, own.n_features, fit_seed)
            alone.fit(own.transform(labelled), y, epochs=alone_epochs, seed=fit_seed)
            point = TransferPoint(
                labels=budget,
                seed=s,
                positives=int(y.sum()),
                consortium=_evaluate(vertical, start, model.preprocessor, test, labelled, target),
                alone=_evaluate(vertical, alone, own, test, labelled, target),
            )
            result.points.append(point)
            if on_point is not None:
                on_point(point)
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def check_output_dir(out: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """The output folder, refused before any training if it is a file, cannot be made, or would
    overwrite an input (the newcomer's file, a file of the run)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder for {CURVE_PNG} and {RESULT_JSON}")
    anchor = path
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise ConfigError(f"--out {path}: {anchor} is not a folder")
    if not os.access(anchor, os.W_OK):
        raise ConfigError(f"--out {path}: {anchor} is not writable")
    inputs_resolved = {Path(p).resolve() for p in inputs}
    for name in (CURVE_PNG, RESULT_JSON):
        if (path / name).resolve() in inputs_resolved:
            raise ConfigError(f"--out {path}: {path / name} is an input of this command; write to another folder")
    return path


def write_outputs(result: TransferResult, out: str | Path) -> dict[str, Path]:
    """``transfer_curve.png`` and ``transfer.json`` in ``out`` (created if needed)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_curve(result, folder / CURVE_PNG)
    data = folder / RESULT_JSON
    data.write_text(result.to_json() + "\n")
    return {"png": png, "json": data}


def plot_curve(result: TransferResult, path: str | Path) -> Path:
    """The learning curve as a PNG: mean ± std over seeds per mode, the 0-label model as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result.curve()
    x = [row["labels"] for row in curve]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    start = "from the consortium's model" + (" (frozen features, head only)" if result.method == "head" else "")
    for mode, label, colour in (("consortium", start, "tab:blue"), ("alone", "alone, from scratch", "tab:orange")):
        mean = np.array([row[f"{mode}_mean"] for row in curve])
        std = np.array([row[f"{mode}_std"] for row in curve])
        ax.plot(x, mean, marker="o", label=label, color=colour)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=colour)
    ax.axhline(float(np.mean(result.as_is)), ls="--", color="grey", lw=1, label="consortium's model, no labels")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:.0f}" for v in x])
    ax.minorticks_off()
    ax.set_xlabel("labelled rows at the new institution")
    ax.set_ylabel(f"{result.metric} on its held-out rows")
    ax.set_title(f"{result.vertical} ({result.model}): a new institution, {result.seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def newcomer_frame(vertical: str | Vertical, rows: int, seed: int) -> pd.DataFrame:
    """A new synthetic institution: the vertical's generator for one institution with another seed
    (its profile is a fresh draw from the same population the consortium's were drawn from)."""
    spec = get_vertical(vertical) if isinstance(vertical, str) else vertical
    return spec.generate(1, rows, seed)
