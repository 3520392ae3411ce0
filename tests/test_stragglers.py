"""Stragglers, drop-outs and the round deadline: who is dropped, what the aggregate is, what is reported.

A recording ClientApp keeps each round's train replies as the nodes sent them; the deadline test
checks that the new global model is the num-examples-weighted mean of the on-time replies only.
Slow nodes are slow in virtual time (a slowdown of 10^6: far past any deadline, nothing sleeps).
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType

from consortia import ExperimentConfig
from consortia.config.stragglers import NodeProfile, parse_profile
from consortia.errors import ConfigError, FederationError
from consortia.federation.client import build_client_app
from consortia.federation.engines import inprocess

SLOW = "slowdown:1000000"  # a million times slower: misses any deadline in virtual time


def _config(**overrides) -> ExperimentConfig:
    values = {"vertical": "healthcare", "institutions": 4, "rows": 1200, "rounds": 2, "finetune_epochs": 0, "seed": 5}
    return ExperimentConfig.build(**{**values, **overrides})


class Recorder:
    """The real ClientApp; keeps (round -> partition -> train reply) and every round's global model."""

    def __init__(self) -> None:
        self.app = build_client_app()
        self.replies: dict[int, dict[int, Message]] = {}
        self.sent: dict[int, list[np.ndarray]] = {}

    def __call__(self, message: Message, context: Context) -> Message:
        reply = self.app(message, context)
        if message.metadata.message_type == MessageType.TRAIN:
            server_round = int(message.content["config"]["server-round"])  # type: ignore[index, arg-type]
            self.replies.setdefault(server_round, {})[int(context.node_config["partition-id"])] = reply  # type: ignore[arg-type]
            self.sent[server_round] = message.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
        return reply


def _run(config: ExperimentConfig) -> tuple[Recorder, object]:
    recorder = Recorder()
    return recorder, inprocess.run(config, client_app=recorder)


def test_the_deadline_drops_the_slow_node_and_the_aggregate_is_the_weighted_mean_of_the_others() -> None:
    config = _config(stragglers={"1": SLOW}, round_deadline_s=5.0, min_institutions=2)
    recorder, outcome = _run(config)
    assert [r.dropped for r in outcome.rounds] == [["hospital-02"], ["hospital-02"]]  # type: ignore[attr-defined]
    assert [r.metrics["participation.dropped"] for r in outcome.rounds] == [1.0, 1.0]  # type: ignore[attr-defined]
    replies = recorder.replies[1]
    assert set(replies) == {0, 1, 2, 3}  # the slow node did train: its reply came too late
    on_time = [replies[p] for p in (0, 2, 3)]
    weights = np.array([float(r.content["metrics"]["num-examples"]) for r in on_time])  # type: ignore[arg-type]
    assert len(set(weights)) > 1  # unequal sizes: a plain mean would differ
    models = [r.content["arrays"].to_numpy_ndarrays() for r in on_time]  # type: ignore[union-attr]
    expected = [
        sum(w * m[k] for w, m in zip(weights / weights.sum(), models, strict=True)) for k in range(len(models[0]))
    ]
    for got, want in zip(recorder.sent[2], expected, strict=True):  # round 2 starts from round 1's aggregate
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    with_slow = [*on_time, replies[1]]  # and the slow node's model would have moved it
    all_w = np.array([float(r.content["metrics"]["num-examples"]) for r in with_slow])  # type: ignore[arg-type]
    everyone = sum(
        w * m.content["arrays"].to_numpy_ndarrays()[0] for w, m in zip(all_w / all_w.sum(), with_slow, strict=True)
    )  # type: ignore[union-attr]
    assert not np.allclose(everyone, recorder.sent[2][0], rtol=1e-6, atol=1e-9)


def test_without_a_deadline_the_slow_node_is_waited_for() -> None:
    _, outcome = _run(_config(stragglers={"1": SLOW}, min_institutions=2))
    assert [r.dropped for r in outcome.rounds] == [[], []]  # type: ignore[attr-defined]


def test_failures_are_reproducible_for_a_seed_and_reported_per_round() -> None:
    config = _config(rounds=6, stragglers={"0": "failure:0.5", "2": "failure:0.5"}, min_institutions=1)
    first = [r.dropped for r in _run(config)[1].rounds]  # type: ignore[attr-defined]
    again = [r.dropped for r in _run(config)[1].rounds]  # type: ignore[attr-defined]
    other = [r.dropped for r in _run(config.model_copy(update={"seed": 6}))[1].rounds]  # type: ignore[attr-defined]
    assert first == again
    assert any(first) and not all(first)  # some rounds lose a node, some do not (p = 0.5 over 12 draws)
    assert {name for names in first for name in names} <= {"hospital-01", "hospital-03"}
    assert first != other  # the draw depends on the seed
    profile = NodeProfile(failure_rate=0.5)
    draws = [profile.fails(5, "0", r) for r in range(1, 7)]
    assert draws == [profile.fails(5, "0", r) for r in range(1, 7)]


def test_a_failing_node_replies_with_an_error_and_trains_nothing() -> None:
    recorder, outcome = _run(_config(rounds=1, stragglers={"3": "failure:0.999"}, min_institutions=2))
    reply = recorder.replies[1][3]
    assert reply.has_error() and "simulated failure" in str(reply.error.reason)
    assert outcome.rounds[0].dropped == ["hospital-04"]  # type: ignore[attr-defined]


def test_too_few_on_time_institutions_stop_the_run_with_one_line() -> None:
    config = _config(rounds=1, stragglers={"0": SLOW, "1": SLOW}, round_deadline_s=5.0, min_institutions=3)
    with pytest.raises(FederationError, match=r"round 1: only 2 of 4 institutions .* needs 3"):
        _run(config)
    with pytest.raises(FederationError, match="needs 4"):  # no min_institutions: every sampled one
        _run(_config(rounds=1, stragglers={"0": SLOW}, round_deadline_s=5.0))


def test_bad_profiles_and_combinations_are_one_line_errors() -> None:
    assert parse_profile("slowdown:4, failure:0.2") == NodeProfile(4.0, 0.2)
    for spec, message in (("slowdown:0.5", ">= 1"), ("failure:1", r"\[0, 1\)"), ("speed:2", "slowdown:FACTOR")):
        with pytest.raises(ConfigError, match=message):
            _config(stragglers={"0": spec})
    with pytest.raises(ConfigError, match="out of range"):
        _config(stragglers={"9": "slowdown:2"})
    with pytest.raises(ConfigError, match="plain aggregation"):
        _config(round_deadline_s=5.0, privacy={"aggregation": "secagg+"})


def test_the_heterogeneous_preset_runs_end_to_end() -> None:
    config = _config(preset="heterogeneous", institutions=5, rows=1500, rounds=2, stragglers={"4": SLOW})
    assert (config.strategy, config.model, config.fraction_train) == ("fedprox", "logistic_torch", 0.8)
    assert config.round_deadline_s == 60.0 and config.min_institutions == 2
    _, outcome = _run(config)
    rounds = outcome.rounds  # type: ignore[attr-defined]
    assert len(rounds) == 2 and all(r.metrics["pooled.auroc"] > 0.6 for r in rounds)
    assert all(set(r.dropped) <= {"hospital-05"} for r in rounds)
    assert any(r.dropped == ["hospital-05"] for r in rounds)  # sampled at least once in two rounds of 4 of 5
    given = _config(preset="heterogeneous", model="logistic")  # no proximal term: the strategy stays FedAvg
    assert (given.strategy, given.round_deadline_s) == ("fedavg", 60.0)
