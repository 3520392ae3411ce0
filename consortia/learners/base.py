"""The Learner contract every model family implements.

A learner is a model whose state can leave the institution as a list of numpy arrays
(``get_parameters``) and come back averaged (``set_parameters``), and that trains for a given
number of local epochs on the institution's own rows. Tree models whose "parameters" are a
serialized booster fit the same contract with a one-element uint8 array.

Features that need more than that (secure aggregation, DP-SGD, Reptile, FedMA) read the
learner's capability flags (class attributes, so a model NAME can be checked before anything is
built or trained: ``capabilities("mlp")``) and refuse a learner that lacks one with ``require``:
one ConfigError line that says why and which models would do. Each flag promises the methods of
one of the Protocols below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Any, Protocol, get_type_hints, runtime_checkable

import numpy as np

from consortia.catalog import LEARNERS
from consortia.errors import ConfigError

Params = dict[str, Any]


@runtime_checkable
class Learner(Protocol):
    """What the federated core needs from a model family, and which extra parts it offers."""

    #: parameters are real-valued arrays of fixed shapes that can be averaged, clipped, noised,
    #: masked or encrypted element-wise (secure aggregation, HE, DP); also promises ``layer_names``
    aggregatable: bool
    #: whether ``fit`` honours ``proximal_mu`` (FedProx's proximal term)
    supports_proximal: bool
    #: has a per-batch step (``BatchStepLearner``): Reptile's k local steps, DP-SGD's loop
    supports_batch_steps: bool
    #: exposes its PyTorch module and optimizer (``TorchModuleLearner``): what Opacus wraps
    supports_torch_module: bool
    #: its arrays form layers of neurons (``LayerMatchingLearner``): what FedMA permutes
    supports_layer_matching: bool
    #: what ``get_parameters`` holds, in words, for error messages ("serialized trees (booster bytes)")
    parameter_format: str

    def get_parameters(self) -> list[np.ndarray]: ...

    def set_parameters(self, parameters: list[np.ndarray]) -> None: ...

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, shape ``(n,)``."""
        ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]: ...


@runtime_checkable
class AggregatableLearner(Learner, Protocol):
    """``aggregatable``: the arrays are named, so a feature can treat each one by what it is."""

    def layer_names(self) -> list[str]:
        """One name per ``get_parameters()`` array, in the same order ("coef", "out.weight")."""
        ...


@runtime_checkable
class BatchStepLearner(AggregatableLearner, Protocol):
    """``supports_batch_steps``: ``fit`` is ``start_fit`` then ``train_step`` over ``batches``,
    so a caller that drives those itself (same seed, same batches) gets the same parameters."""

    batch_size: int

    def step_context(self, seed: int | None = None) -> AbstractContextManager[None]:
        """The RNG (seeded, when given a seed) and thread state ``fit`` runs its steps in."""
        ...

    def start_fit(self, y: np.ndarray, *, proximal_mu: float = 0.0) -> None:
        """Per-fit state: a fresh optimizer, class weights from these labels, FedProx's anchor."""
        ...

    def batches(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, epochs: int = 1, batch_size: int | None = None
    ) -> Iterator[tuple[Any, Any]]:
        """Shuffled ``(xb, yb)`` mini-batches, ``epochs`` passes, in exactly ``fit``'s order."""
        ...

    def train_step(self, xb: Any, yb: Any) -> float:
        """One optimizer step on one batch; returns that batch's loss."""
        ...


@runtime_checkable
class TorchModuleLearner(BatchStepLearner, Protocol):
    """``supports_torch_module``: the live ``torch.nn.Module`` and the optimizer ``train_step``
    uses, so DP-SGD (Opacus) can wrap both and hand the optimizer back."""

    optimizer: Any  # torch.optim.Optimizer; settable

    def torch_module(self) -> Any:
        """The ``nn.Module`` whose parameters ``get_parameters`` reads (logits of shape ``(n,)``)."""
        ...

    def make_optimizer(self) -> Any:
        """A fresh optimizer of this learner's kind and settings over ``torch_module()``."""
        ...


@runtime_checkable
class LayerMatchingLearner(AggregatableLearner, Protocol):
    """``supports_layer_matching``: each layer's neurons are rows of its weight."""

    def layers(self) -> list[tuple[str, str]]:
        """``(weight, bias)`` names per layer, input to output; weights are ``(out_units, in_units)``,
        biases ``(out_units,)``; neuron ``j`` of a layer is column ``j`` of the next layer's weight."""
        ...


# ------------------------------------------------------------------ capabilities


@dataclass(frozen=True)
class LearnerCapabilities:
    """A learner class's flags, readable without building or training it."""

    aggregatable: bool
    supports_proximal: bool
    supports_batch_steps: bool
    supports_torch_module: bool
    supports_layer_matching: bool
    parameter_format: str


#: the boolean flags ``require`` checks
CAPABILITIES: tuple[str, ...] = tuple(f.name for f in fields(LearnerCapabilities) if f.name != "parameter_format")

#: why a learner without the flag cannot take part (``{parameter_format}`` is the learner's)
_WHY_NOT = {
    "aggregatable": "its parameters are {parameter_format} that cannot be averaged, clipped, masked or encrypted",
    "supports_proximal": "its training has no proximal term (FedProx)",
    "supports_batch_steps": "it has no per-batch training step (train_step) to drive batch by batch",
    "supports_torch_module": "it is not a PyTorch module with an optimizer (torch_module, make_optimizer)",
    "supports_layer_matching": "its parameters are not layers of neurons (weight, bias) that can be matched",
}


def learner_class(name: str) -> type:
    """The class a registered model name builds, imported now but not constructed.

    A catalog entry is a class or a ``build`` function whose return annotation names the class.
    """
    build = LEARNERS.get(name)
    if isinstance(build, type):
        return build
    try:
        returned = get_type_hints(build).get("return")
    except (NameError, TypeError):
        returned = None
    if not isinstance(returned, type):
        raise TypeError(f"model '{name}': its build function must annotate the learner class it returns")
    return returned


def capabilities_of(learner: object) -> LearnerCapabilities:
    """The flags of a learner instance or class (a missing flag is a contract bug: AttributeError)."""
    cls = learner if isinstance(learner, type) else type(learner)
    values = {f.name: getattr(cls, f.name) for f in fields(LearnerCapabilities)}
    return LearnerCapabilities(**values)


def require(learner: str | type | object, capability: str | Iterable[str], feature: str) -> LearnerCapabilities:
    """Refuse a model (a name, class or instance) that lacks ``capability`` for ``feature``.

    Raises one ConfigError line naming the model, the feature, why, and the models that would do;
    returns the model's capabilities when it has them all.
    """
    wanted = [capability] if isinstance(capability, str) else list(capability)
    unknown = [c for c in wanted if c not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capability {', '.join(unknown)}; known: {', '.join(CAPABILITIES)}")
    cls = learner_class(learner) if isinstance(learner, str) else learner
    caps = capabilities_of(cls)
    missing = [c for c in wanted if not getattr(caps, c)]
    if not missing:
        return caps
    classes = _registered_classes()
    if isinstance(learner, str):
        name = learner.strip().lower()
    else:
        cls = learner if isinstance(learner, type) else type(learner)
        name = next((n for n, c in classes.items() if c is cls), cls.__name__)
    reasons = ", and ".join(_WHY_NOT[c].format(parameter_format=caps.parameter_format) for c in missing)
    others = [n for n, c in classes.items() if n != name and _has(c, wanted)]
    instead = f"; use {_either(others)}" if others else ""
    raise ConfigError(f"model '{name}' cannot be used with {feature}: {reasons}{instead}")


def models_with(*capability: str) -> list[str]:
    """Registered model names whose class has every given flag (imports each learner module)."""
    return [n for n, c in _registered_classes().items() if _has(c, capability)]


def _has(cls: type, flags: Iterable[str]) -> bool:
    return all(getattr(cls, f, False) is True for f in flags)


def _registered_classes() -> dict[str, type]:
    """Name -> class for every registered model that imports (an optional one may not)."""
    classes = {}
    for name in LEARNERS.names():
        try:
            classes[name] = learner_class(name)
        except (ImportError, TypeError):
            continue
    return classes


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# ------------------------------------------------------------------ shared helpers


class EvaluateMixin:
    """Model-independent evaluation shared by every learner (log loss and AUROC)."""

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        proba = self.predict_proba(X)  # type: ignore[attr-defined]
        from sklearn.metrics import log_loss, roc_auc_score  # not at import: histogram workers skip sklearn

        metrics = {"loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1]))}
        if len(np.unique(y)) == 2:
            metrics["auroc"] = float(roc_auc_score(y, proba))
        return metrics


def number(
    params: Params,
    key: str,
    default: float,
    *,
    kind: type = float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> Any:
    """Pop ``params[key]`` as a checked ``kind`` (float or int) in ``[lo, hi]`` (``(lo, hi]`` when
    ``lo_open``), so a bad option is one ConfigError line instead of a library traceback mid-run."""
    value = params.pop(key, default)
    bound = ""
    if lo is not None:
        bound = f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        bound += f"{' and' if bound else ''} <= {hi:g}"
    what = "an integer" if kind is int else "a number"
    message = f"model_params.{key} must be {what}{bound} (got {value!r})"
    if isinstance(value, bool):
        raise ConfigError(message)
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if not math.isfinite(parsed) or (kind is int and parsed != int(parsed)):
        raise ConfigError(message)
    if lo is not None and (parsed < lo or (lo_open and parsed == lo)):
        raise ConfigError(message)
    if hi is not None and parsed > hi:
        raise ConfigError(message)
    return int(parsed) if kind is int else parsed


def choice(params: Params, key: str, default: str | None, allowed: tuple[str | None, ...]) -> str | None:
    """Pop ``params[key]`` as one of ``allowed`` (case-sensitive: a near miss is refused, not ignored)."""
    value = params.pop(key, default)
    if value not in allowed:
        shown = " or ".join(repr(a) for a in allowed if a is not None)
        raise ConfigError(f"model_params.{key} must be {shown} (got {value!r})")
    return value


def binary_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean log loss; plain numpy because it runs in every local training step's report."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_positive_weight(y: np.ndarray) -> float:
    """Weight of a positive example so both classes weigh the same (rare fraud, defects)."""
    positives = float(np.sum(y == 1))
    negatives = float(np.sum(y == 0))
    return negatives / positives if positives > 0 else 1.0
