"""Membership-inference audit of a finished run: can an attacker tell training rows from others?

Each institution's training rows are the members, its held-out test rows the non-members. Two
attacks score every row, against the global model and against the institution's fine-tuned
model (rebuilt exactly as the ClientApp fine-tunes it):

* ``loss_threshold`` (Yeom et al. 2018): the model's log-probability of the true label (minus
  the row's loss); training rows tend to have lower loss. Needs nothing but the model.
* ``lira`` (Carlini et al. 2022, ``consortia.privacy.shadow``): shadow models trained on random
  halves of the institution's rows, with the run's learner and local budget
  (``rounds x local_epochs`` epochs), give each row's confidence "in" vs "out" of training.

Reported per attack: AUROC (0.5 = chance) and the TPR at 1 % FPR (how many members an attacker
finds while almost never accusing a non-member), per institution and pooled over institutions.
With a few hundred non-members per institution, 1 % FPR rests on a handful of rows: read the
per-institution TPR as rough. ``max_rows`` caps the rows per institution (a seeded subsample
that keeps the member share; the shadows then train on halves of the subsample only).
The shadows imitate one institution training alone: the global model saw every institution's
rows, so LiRA against it is an approximation (a weaker attacker than a perfect imitation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from consortia.data.consortium import load_federation
from consortia.data.institutions import InstitutionData, institution_seed
from consortia.errors import ConfigError
from consortia.learners import Learner, make_learner
from consortia.privacy.shadow import lira_scores, logit_confidence, shadow_membership, train_shadows
from consortia.runs.folder import RunFolder
from consortia.verticals import get_vertical

ATTACKS = ("loss_threshold", "lira")
MODELS = ("global", "finetuned")
DEFAULT_SHADOWS = 8
LOW_FPR = 0.01
#: the ClientApp's fine-tuning seed salt (consortia.federation.client.FINETUNE_SALT; privacy sits below it)
FINETUNE_SALT = 10**6
#: seed salts of the audit's own random draws, distinct from every round number and FINETUNE_SALT
SUBSAMPLE_SALT, KEEP_SALT, SHADOW_SALT = 7_000_001, 7_000_002, 7_100_000
#: config keys that describe a privacy mechanism (``privacy``; others read defensively)
PRIVACY_WORDS = ("privacy", "dp", "secagg", "secure", "encrypt", "clip", "noise")


# -- metrics and the loss-threshold attack (pure functions) ----------------------------------------
@dataclass(frozen=True)
class AttackResult:
    """How well one attack separates members from non-members."""

    auroc: float
    tpr_at_1pct_fpr: float

    def to_dict(self) -> dict[str, float | None]:
        return {"auroc": _finite(self.auroc), "tpr_at_1pct_fpr": _finite(self.tpr_at_1pct_fpr)}


def tpr_at_fpr(is_member: np.ndarray, scores: np.ndarray, max_fpr: float = LOW_FPR) -> float:
    """Largest true-positive rate of any threshold whose false-positive rate is at most ``max_fpr``."""
    if len(np.unique(is_member)) < 2:
        return math.nan
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def attack_result(is_member: np.ndarray, scores: np.ndarray) -> AttackResult:
    """AUROC and TPR at 1 % FPR of ``scores`` (higher = "member") against the true membership."""
    if len(np.unique(is_member)) < 2:
        return AttackResult(math.nan, math.nan)
    return AttackResult(float(roc_auc_score(is_member, scores)), tpr_at_fpr(is_member, scores))


def loss_threshold_scores(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minus each row's log loss (the log-probability of its true label): high = likely member."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1 - 1e-15)
    return np.where(np.asarray(y) == 1, np.log(p), np.log1p(-p))


def privacy_mechanism(config_values: Mapping[str, Any]) -> str:
    """The run's privacy mechanism as its config states it, or "none" (plain federated averaging)."""
    found = []
    for key, value in config_values.items():
        if not any(word in key.lower() for word in PRIVACY_WORDS) or value in (None, False, "", "none", 0, {}):
            continue
        if isinstance(value, Mapping):
            named = next((value[k] for k in ("mechanism", "kind", "name", "type") if value.get(k)), None)
            if named == "none":  # e.g. the config's ``privacy`` settings with no mechanism on
                continue
            found.append(f"{key}: {named}" if named else f"{key}: {dict(value)}")
        else:
            found.append(f"{key}: {value}")
    return "; ".join(found) or "none"


# -- the audit of a run folder ------------------------------------------------------------------
@dataclass
class Scores:
    """One attacked model on one institution's rows: membership and each attack's scores."""

    is_member: np.ndarray
    attacks: dict[str, np.ndarray]

    def summary(self) -> dict[str, Any]:
        members = int(self.is_member.sum())
        out: dict[str, Any] = {"members": members, "non_members": len(self.is_member) - members}
        for name, scores in self.attacks.items():
            out[name] = attack_result(self.is_member, scores).to_dict()
        return out


@dataclass
class AuditReport:
    """The audit's numbers; ``to_dict`` is the ``--json`` document."""

    run_dir: str
    vertical: str
    model: str
    privacy: str
    checkpoint_round: int
    shadows: int
    shadow_epochs: int
    max_rows: int | None
    seed: int
    #: model ("global"/"finetuned") -> institution -> Scores
    scores: dict[str, dict[str, Scores]]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def pooled(self, model: str) -> dict[str, Any]:
        parts = list(self.scores[model].values())
        joined = Scores(
            np.concatenate([p.is_member for p in parts]),
            {a: np.concatenate([p.attacks[a] for p in parts]) for a in ATTACKS},
        )
        return joined.summary()

    def to_dict(self) -> dict[str, Any]:
        pooled = {model: self.pooled(model) for model in MODELS}
        return {
            "run_dir": self.run_dir,
            "vertical": self.vertical,
            "model": self.model,
            "privacy": self.privacy,
            "checkpoint_round": self.checkpoint_round,
            "members": pooled["global"]["members"],
            "non_members": pooled["global"]["non_members"],
            "attacks": {a: pooled["global"][a] for a in ATTACKS},
            "pooled": pooled,
            "models": {m: {name: s.summary() for name, s in self.scores[m].items()} for m in MODELS},
            "settings": {
                "shadows": self.shadows,
                "shadow_epochs": self.shadow_epochs,
                "max_rows": self.max_rows,
                "seed": self.seed,
                "low_fpr": LOW_FPR,
            },
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


def audit_run(
    run_dir: str | Path,
    *,
    shadows: int = DEFAULT_SHADOWS,
    max_rows: int | None = None,
    seed: int | None = None,
    on_institution: Callable[[str], None] | None = None,
) -> AuditReport:
    """Attack the run's global model and every fine-tuned model; ``seed`` defaults to the run's."""
    if shadows < 2:
        raise ConfigError(f"--shadows must be at least 2 (got {shadows})")
    if max_rows is not None and max_rows < 10:
        raise ConfigError(f"--max-rows must be at least 10 (got {max_rows})")
    started = time.perf_counter()
    folder = RunFolder(run_dir)
    config = folder.read_config()
    checkpoint = folder.model_checkpoint()
    if checkpoint is None:
        raise ConfigError(f"{folder.path} has no checkpoint to audit (the run trained no round)")
    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    target = federation.schema.target
    preprocessor = checkpoint.preprocessor
    params = vertical.model_params(config.model, config.model_params)
    seed = config.seed if seed is None else seed
    budget = config.rounds * config.local_epochs  # consortia.experiment.baselines.training_budget

    def fresh(init_seed: int) -> Learner:
        return make_learner(config.model, preprocessor.n_features, params, seed=init_seed, device=config.device)

    def global_model() -> Learner:
        learner = fresh(config.seed)  # the ClientApp's learner: the run's seed, then the global parameters
        learner.set_parameters(list(checkpoint.parameters))
        return learner

    scores: dict[str, dict[str, Scores]] = {m: {} for m in MODELS}
    for name, inst in federation.institutions.items():
        if on_institution is not None:
            on_institution(name)
        x_train, y_train, _, _ = inst.arrays(preprocessor, target)
        tuned = global_model()
        if config.finetune_epochs:
            tuned.fit(
                x_train, y_train, epochs=config.finetune_epochs, seed=institution_seed(config.seed, name, FINETUNE_SALT)
            )
        x, y, is_member = _attacked_rows(inst, preprocessor, target, max_rows, seed)
        keep = shadow_membership(len(y), shadows, np.random.default_rng(institution_seed(seed, name, KEEP_SALT)))
        seeds = [institution_seed(seed, name, SHADOW_SALT + i) for i in range(shadows)]
        shadow = train_shadows(fresh, x, y, keep, epochs=budget, seeds=seeds)
        for model, learner in (("global", global_model()), ("finetuned", tuned)):
            proba = learner.predict_proba(x)
            attacks = {
                "loss_threshold": loss_threshold_scores(proba, y),
                "lira": lira_scores(logit_confidence(proba, y), shadow, keep),
            }
            scores[model][name] = Scores(is_member, attacks)

    notes = []
    if checkpoint.round < config.rounds:
        notes.append(f"the newest checkpoint is round {checkpoint.round} of {config.rounds}: the run did not finish")
    if not config.finetune_epochs:
        notes.append("finetune_epochs is 0: the fine-tuned models are the global model")
    return AuditReport(
        run_dir=str(folder.path), vertical=config.vertical, model=config.model,
        privacy=privacy_mechanism(config.model_dump(mode="json")), checkpoint_round=checkpoint.round,
        shadows=shadows, shadow_epochs=budget, max_rows=max_rows, seed=seed, scores=scores,
        seconds=time.perf_counter() - started, notes=notes,
    )  # fmt: skip


def _attacked_rows(
    inst: InstitutionData, preprocessor, target: str, max_rows: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members then non-members (at most ``max_rows`` together, member share kept): X, y, membership."""
    train, test = inst.train, inst.test
    total = len(train) + len(test)
    if max_rows is not None and total > max_rows:
        rng = np.random.default_rng(institution_seed(seed, inst.name, SUBSAMPLE_SALT))
        n_train = min(max(round(max_rows * len(train) / total), 1), max_rows - 1)
        train = train.iloc[np.sort(rng.choice(len(train), n_train, replace=False))]
        test = test.iloc[np.sort(rng.choice(len(test), min(max_rows - n_train, len(test)), replace=False))]
    x = np.concatenate([preprocessor.transform(train), preprocessor.transform(test)])
    y = np.concatenate([train[target].to_numpy(dtype=int), test[target].to_numpy(dtype=int)])
    is_member = np.concatenate([np.ones(len(train), dtype=int), np.zeros(len(test), dtype=int)])
    return x, y, is_member


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
