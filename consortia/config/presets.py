"""The article's three protocols as named presets: ``plain``, ``secured``, ``heterogeneous``.

A preset fills in settings the user did not give; what the user gives always wins, so
``--preset secured --secure-agg he`` is the secured protocol with homomorphic encryption.

* ``plain``: federated averaging as configured (the default; changes nothing);
* ``secured``: every aggregate through secure aggregation (SecAgg+ unless HE is chosen), with
  client-level DP when a privacy budget (``privacy.epsilon``) is given; in a deployment, TLS and
  node authentication are always on (``consortia serve``);
* ``heterogeneous``: for unequal members (different case mixes, sizes, speeds, reliability):

  - FedProx (``proximal_mu`` 0.01) against client drift, on the PyTorch logistic model
    (``logistic_torch``) unless a model is given; scikit-learn's ``logistic`` and ``xgboost`` have
    no proximal term, so with those the strategy stays as given (FedAvg / the XGBoost strategy);
  - a round deadline (``round_deadline_s`` 60): train replies later than that are dropped and
    reported per round (``RoundRecord.dropped``, ``participation.dropped``); in-process the time
    is virtual (measured x each node's ``compute-slowdown``), in a deployment it is the wait;
  - partial participation (``fraction_train`` 0.8: four of five institutions train each round,
    drawn with the run's seed), so one slow member does not hold up every round;
  - going on when members drop out or miss the deadline (``min_institutions``: half, at least 2);
  - weighting by data size: FedAvg's and FedProx's mean weighted by ``num-examples`` over the
    replies that arrived (what Flower's FedAvg does; the preset changes nothing there).

  Measured on the three verticals in docs/heterogeneity.md.
"""

from __future__ import annotations

from typing import Any, Literal

Preset = Literal["plain", "secured", "heterogeneous"]
#: learners with a proximal term (FedProx); the config layer cannot ask the learners themselves
PROXIMAL_MODELS = ("logistic_torch", "mlp")


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (an ExperimentConfig's raw input) with the preset's defaults filled in."""
    preset = values.get("preset", "plain")
    if preset == "secured":
        given = values.get("privacy") or {}
        privacy = given.model_dump(exclude_unset=True) if hasattr(given, "model_dump") else dict(given)
        privacy.setdefault("aggregation", "secagg+")
        if privacy.get("epsilon") is not None:
            privacy.setdefault("mechanism", "dp-client")
        return {**values, "privacy": privacy}
    if preset == "heterogeneous":
        filled = dict(values)
        filled.setdefault("model", "logistic_torch")
        if "strategy" not in filled and str(filled["model"]).strip().lower() in PROXIMAL_MODELS:
            filled["strategy"] = "fedprox"
            filled["strategy_params"] = {"proximal_mu": 0.01, **dict(filled.get("strategy_params") or {})}
        given = filled.get("privacy") or {}
        aggregation = getattr(given, "aggregation", None) or (
            given.get("aggregation") if isinstance(given, dict) else None
        )
        if aggregation in (None, "plain"):  # SecAgg+ and HE need every sampled institution: no deadline then
            filled.setdefault("round_deadline_s", 60.0)
        filled.setdefault("fraction_train", 0.8)
        if "min_institutions" not in filled:
            institutions = int(filled.get("institutions", 5))
            filled["min_institutions"] = max(2, institutions // 2)
        return filled
    return values
