"""The strategies the demo offers per model, and each one's key options as sidebar widgets.

A strategy is offered only where the chosen model can take part in it (its learner's capability
flags, ``consortia.learners.capabilities``): SCAFFOLD and FedMeta drive PyTorch steps, FedMA
permutes the MLP's neurons, FedProx adds a proximal term. The options are the few that change
what the strategy does (``--strategy-param`` on the command line); everything else keeps
Consortia's defaults. No Streamlit here: the widgets module draws what this module describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consortia.federation.algorithms.fedmeta import DEFAULT_INNER_LR
from consortia.federation.strategies.fedmeta import DEFAULT_SERVER_LR

#: what a model must support to train under a strategy (``LearnerCapabilities`` flag names)
NEEDS: dict[str, tuple[str, ...]] = {
    "fedprox": ("supports_proximal",),
    "scaffold": ("supports_torch_module",),
    "fedmeta": ("supports_torch_module",),
    "fedma": ("supports_torch_module", "supports_layer_matching"),
}


@dataclass(frozen=True)
class Option:
    """One strategy option: a number, or one of ``choices`` (booleans are choices too)."""

    name: str
    label: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""
    #: another option of the same strategy whose value picks this one's default (``defaults``)
    depends_on: str | None = None
    defaults: dict[Any, Any] = field(default_factory=dict)

    def default_for(self, chosen: dict[str, Any]) -> Any:
        if self.depends_on is None:
            return self.default
        return self.defaults.get(chosen.get(self.depends_on), self.default)


def _robust(f_default: int) -> Option:
    return Option(
        "num_malicious_nodes", "Malicious institutions tolerated (f)", f_default, lo=0, hi=10, step=1,
        help="how many poisoned updates the aggregator is built to withstand",
    )  # fmt: skip


#: strategy -> its key options, in the order they are shown
OPTIONS: dict[str, tuple[Option, ...]] = {
    "fedprox": (Option("proximal_mu", "Proximal term μ", 0.1, lo=0.001, hi=10.0, step=0.01,
                       help="pulls each local model towards the global one (0 would be FedAvg)"),),
    "fedavgm": (Option("server_momentum", "Server momentum", 0.9, lo=0.0, hi=0.99, step=0.05),),
    "fedadam": (Option("eta", "Server learning rate η", 0.1, lo=0.0001, hi=1.0, step=0.01),),
    "fedyogi": (Option("eta", "Server learning rate η", 0.01, lo=0.0001, hi=1.0, step=0.01),),
    "fedadagrad": (Option("eta", "Server learning rate η", 0.1, lo=0.0001, hi=1.0, step=0.01),),
    "fedtrimmedavg": (Option("beta", "Share trimmed at each end", 0.2, lo=0.0, hi=0.45, step=0.05,
                             help="the largest and smallest values of each coordinate are dropped"),),
    "krum": (_robust(1),),
    "multikrum": (_robust(1), Option("num_nodes_to_select", "Updates averaged", 2, lo=1, hi=50, step=1)),
    "bulyan": (_robust(0),),
    "qfedavg": (
        Option("client_learning_rate", "Client learning rate", 0.01, lo=0.0001, hi=1.0, step=0.005,
               help="q-FedAvg's step scale (its L = 1 / this); it needs tuning per vertical"),
        Option("q", "Fairness q", 0.1, lo=0.0, hi=10.0, step=0.1, help="0 = FedAvg-like; larger favours the worst-off"),
    ),
    "scaffold": (
        Option("option", "Control variate estimate", 1, choices=(1, 2),
               help="1: the full local gradient at the global model; 2: from the local steps taken"),
        Option("server_lr", "Server learning rate", DEFAULT_SERVER_LR["fomaml"], lo=0.1, hi=5.0, step=0.1),
    ),
    "fedma": (Option("independent_init", "Independent initialisations", True, choices=(True, False),
                     help="each institution starts from its own weights, so its neurons must be matched"),),
    "fedmeta": (
        Option("meta", "Meta-learning", "fomaml", choices=("fomaml", "reptile"),
               help="first-order MAML (Per-FedAvg) or Reptile (FedAvg with a server step)"),
        Option("inner_lr", "Inner step size α", DEFAULT_INNER_LR, lo=0.001, hi=1.0, step=0.01,
               help="the local adaptation step the global model is meta-trained for (fomaml)"),
        Option("server_lr", "Server learning rate", DEFAULT_SERVER_LR["fomaml"], lo=0.1, hi=5.0, step=0.1,
               depends_on="meta", defaults=DEFAULT_SERVER_LR, help="Reptile with 1 would be FedAvg"),
    ),
}  # fmt: skip


def strategy_supported(strategy: str, model: str) -> bool:
    """Whether ``model`` has every capability ``strategy`` needs."""
    from consortia.learners import capabilities

    flags = capabilities(model)
    return all(getattr(flags, need) for need in NEEDS.get(strategy, ()))


def needs_text(strategy: str) -> str:
    """The models a strategy needs, in words, for the sidebar caption."""
    from consortia.learners import LEARNERS

    fits = [m for m in LEARNERS.names() if strategy_supported(strategy, m)]
    return ", ".join(fits)
