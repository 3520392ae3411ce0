"""What leaves an institution, and how it is protected (the privacy issue fills this package).

Planned here, each one module: the node's disclosure policy (what a node may send, decided in
its own node config), differential privacy (Flower's DP wrappers and accountant; Opacus for
DP-SGD), secure aggregation (SecAgg+), homomorphic encryption (TenSEAL) and the
membership-inference audit. Differential privacy is here: ``dp`` (both guarantees in a run),
``accounting`` (budget <-> noise) and ``dpsgd`` (record-level DP-SGD with Opacus); without a
mechanism a run is plain federated averaging, and the model card says so.
"""
