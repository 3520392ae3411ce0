"""Poisoned members: each malicious behaviour changes what its node replies, and only its node.

A recording ClientApp keeps every round-1 train reply; round 1 starts from the same global model
in every run with one seed, so a malicious node's reply can be compared with its honest self.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict

from consortia import ExperimentConfig
from consortia.config.attacks import Attack
from consortia.errors import ConfigError
from consortia.federation.attacks import apply_trigger, poison_rows
from consortia.federation.client import build_client_app
from consortia.federation.engines import inprocess


def _config(**overrides) -> ExperimentConfig:
    values = {"vertical": "healthcare", "institutions": 3, "rows": 900, "rounds": 1, "finetune_epochs": 0, "seed": 3}
    return ExperimentConfig.build(**{**values, **overrides})


class FirstRound:
    """The real ClientApp; keeps each partition's round-1 train message, context and reply."""

    def __init__(self) -> None:
        self.app = build_client_app()
        self.train: dict[int, tuple[Message, Context, Message]] = {}

    def __call__(self, message: Message, context: Context) -> Message:
        reply = self.app(message, context)
        if message.metadata.message_type == MessageType.TRAIN:
            self.train.setdefault(int(context.node_config["partition-id"]), (message, context, reply))
        return reply

    def sent(self, partition: int) -> list[np.ndarray]:
        return self.train[partition][0].content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]

    def replied(self, partition: int) -> list[np.ndarray]:
        return self.train[partition][2].content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]

    def delta(self, partition: int) -> list[np.ndarray]:
        return [r - s for r, s in zip(self.replied(partition), self.sent(partition), strict=True)]

    def ask_as(self, partition: int, **node_config: str | float) -> list[np.ndarray]:
        """Partition's round-1 train message answered again, by a node with these node config entries."""
        message, context, _ = self.train[partition]
        content = RecordDict({"arrays": message.content["arrays"], "config": message.content["config"]})
        fresh = Message(content, dst_node_id=message.metadata.dst_node_id, message_type=MessageType.TRAIN)
        other = Context(
            run_id=context.run_id, node_id=context.node_id, node_config={**context.node_config, **node_config},
            state=RecordDict(), run_config=context.run_config,
        )  # fmt: skip
        reply = self.app(fresh, other)
        return reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]


def _federate(config: ExperimentConfig) -> FirstRound:
    recording = FirstRound()
    inprocess.run(config, client_app=recording)
    return recording


@pytest.fixture(scope="module")
def clean_and_scaled() -> tuple[FirstRound, FirstRound]:
    return _federate(_config()), _federate(_config(attacks={"0": "scale"}))


def _close(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_a_scaled_attacker_replies_ten_times_its_honest_delta_and_no_one_else_changes(clean_and_scaled) -> None:
    clean, scaled = clean_and_scaled
    _close(scaled.sent(0), clean.sent(0))  # the same global model was sent
    assert any(np.abs(d).max() > 1e-6 for d in clean.delta(0))  # an honest node does move the model
    _close(scaled.delta(0), [10 * d for d in clean.delta(0)])
    for partition in (1, 2):  # honest nodes of the attacked federation: bit for bit their clean replies
        for x, y in zip(scaled.replied(partition), clean.replied(partition), strict=True):
            np.testing.assert_array_equal(x, y)


def test_sign_flip_noise_and_their_knobs_turn_the_honest_reply_as_defined(clean_and_scaled) -> None:
    clean, _ = clean_and_scaled
    sent, honest = clean.sent(1), clean.delta(1)
    flipped = clean.ask_as(1, attack="sign-flip")
    _close([f - s for f, s in zip(flipped, sent, strict=True)], [-d for d in honest])
    tripled = clean.ask_as(1, **{"attack": "scale", "attack-scale": 3})
    _close([t - s for t, s in zip(tripled, sent, strict=True)], [3 * d for d in honest])
    noisy = clean.ask_as(1, **{"attack": "noise", "attack-noise-std": 0.5})
    noise = np.concatenate([(n - r).ravel() for n, r in zip(noisy, clean.replied(1), strict=True)])
    assert np.abs(noise).min() > 0 and 0.2 < noise.std() < 1.0  # every parameter noised, at about that std
    again = clean.ask_as(1, **{"attack": "noise", "attack-noise-std": 0.5})
    for x, y in zip(noisy, again, strict=True):  # the same seed, node and round: the same noise
        np.testing.assert_array_equal(x, y)
    for x, y in zip(clean.ask_as(1), clean.replied(1), strict=True):  # an honest node asked again: the same
        np.testing.assert_array_equal(x, y)


def test_label_flip_trains_on_one_minus_y(clean_and_scaled) -> None:
    """From the all-zero first global model, logistic regression on 1 - y is exactly the negated model
    (its loss and L2 penalty are symmetric under w -> -w), so the flipped node replies minus the honest one."""
    clean, _ = clean_and_scaled
    assert all(np.all(s == 0) for s in clean.sent(2))
    flipped = clean.ask_as(2, attack="label-flip")
    _close(flipped, [-r for r in clean.replied(2)])
    half = clean.ask_as(2, **{"attack": "label-flip", "attack-fraction": 0.5})
    assert not np.allclose(np.concatenate([h.ravel() for h in half]), np.concatenate([f.ravel() for f in flipped]))


def test_row_attacks_poison_a_fixed_share_of_copies() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
    x0, y0 = x.copy(), y.copy()
    fx, fy = poison_rows({"attack": "label-flip"}, x, y, key="k")
    assert fx is x and np.array_equal(fy, 1 - y)
    bx, by = poison_rows({"attack": "backdoor", "attack-fraction": 0.25}, x, y, key="k")
    stamped = np.all(bx[:, :3] == [4.0, -4.0, 4.0], axis=1)
    assert stamped.sum() == 50 and np.all(by[stamped] == 1)
    np.testing.assert_array_equal(bx[~stamped], x[~stamped])
    np.testing.assert_array_equal(by[~stamped], y[~stamped])
    np.testing.assert_array_equal(apply_trigger(x)[stamped], bx[stamped])
    again, _ = poison_rows({"attack": "backdoor", "attack-fraction": 0.25}, x, y, key="k")
    np.testing.assert_array_equal(again, bx)  # the same rows every round
    np.testing.assert_array_equal(x, x0)  # the cached inputs are never changed in place
    np.testing.assert_array_equal(y, y0)
    for honest in ({}, {"attack": ""}, {"attack": "scale"}):  # update attacks leave the rows alone
        assert poison_rows(honest, x, y, key="k") == (x, y)


def test_bad_behaviours_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown attack 'flip'; choose one of: label-flip") as caught:
        _config(attacks={"0": "flip"})
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="institution 7 is out of range"):
        _config(attacks={"7": "scale"})
    with pytest.raises(ConfigError, match="attack-scale=0 must be finite and non-zero"):
        _config(attacks={"0": "scale:0"})
    with pytest.raises(ConfigError, match="unknown behaviour"):
        Attack.from_node_config({"attack": "bogus"})
    with pytest.raises(ConfigError, match="no institution named 'nowhere'"):
        inprocess.run(_config(attacks={"nowhere": "scale"}))
    assert Attack.from_node_config({}) is None


def test_median_resists_a_scaled_attacker_that_breaks_fedavg() -> None:
    """Locally converged updates (5 epochs) x10 from one of three institutions: FedAvg overshoots the
    optimum every round and oscillates away from it; the coordinate-wise median ignores the outlier."""

    def auroc(strategy: str, attacks: dict[str, str]) -> float:
        config = _config(rounds=4, local_epochs=5, strategy=strategy, attacks=attacks)
        return inprocess.run(config).pooled["global"]["auroc"]

    attacker = {"1": "scale"}
    fedavg_clean, fedavg_attacked = auroc("fedavg", {}), auroc("fedavg", attacker)
    median_clean, median_attacked = auroc("fedmedian", {}), auroc("fedmedian", attacker)
    assert fedavg_attacked < 0.9 * fedavg_clean
    assert median_attacked >= 0.98 * median_clean


def test_a_bulyan_that_would_skip_every_round_is_refused() -> None:
    """Flower's Bulyan needs 4f + 3 replies and otherwise skips the aggregation with a log line only."""
    from consortia.federation.strategies import build_strategy

    assert build_strategy("bulyan", {"num_malicious_nodes": 1}, num_institutions=10).num_malicious_nodes == 1
    with pytest.raises(ConfigError, match=r"needs 11 institutions a round \(4f \+ 3\); a round trains 10"):
        build_strategy("bulyan", {"num_malicious_nodes": 2}, num_institutions=10)
