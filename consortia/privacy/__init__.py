"""What leaves an institution, and how it is protected; one module per mechanism.

* ``disclosure``: the node's own disclosure policy (node config; no per-row data by default);
* ``accounting``: from a budget (ε, δ) to a noise multiplier and back (dp-accounting, Opacus);
* ``dp``: client-level DP-FedAvg with Flower's wrappers and accountant, and the checks;
* ``dpsgd``: record-level DP-SGD inside an institution with Opacus;
* ``audit`` and ``shadow``: membership-inference attacks on a run's models.

Secure aggregation (SecAgg+) and homomorphic encryption come next, each one module here.
"""
