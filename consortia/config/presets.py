"""The article's three protocols as named presets: ``plain``, ``secured``, ``heterogeneous``.

A preset fills in settings the user did not give; what the user gives always wins, so
``--preset secured --secure-agg he`` is the secured protocol with homomorphic encryption.

* ``plain``: federated averaging as configured (the default; changes nothing);
* ``secured``: every aggregate through secure aggregation (SecAgg+ unless HE is chosen), with
  client-level DP when a privacy budget (``privacy.epsilon``) is given; in a deployment, TLS and
  node authentication are always on (``consortia serve``);
* ``heterogeneous``: for unequal members: FedProx (mu 0.01) against client drift, weighted by
  data size (FedAvg's default), going on when members drop out (``min_institutions``: half).
"""

from __future__ import annotations

from typing import Any, Literal

Preset = Literal["plain", "secured", "heterogeneous"]
PRESETS: tuple[str, ...] = ("plain", "secured", "heterogeneous")


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
        if "strategy" not in filled:
            filled["strategy"] = "fedprox"
            filled["strategy_params"] = {"proximal_mu": 0.01, **dict(filled.get("strategy_params") or {})}
        if "min_institutions" not in filled:
            institutions = int(filled.get("institutions", 5))
            filled["min_institutions"] = max(2, institutions // 2)
        return filled
    return values
