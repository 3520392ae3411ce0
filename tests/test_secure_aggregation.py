"""The secured protocol: SecAgg+ and HE give plain FedAvg's result while the server sees no update.

The one-round tests drive the real ClientApp through the in-process Grid and Flower's own
SecAgg+ workflow, and compare with the same institutions' plaintext models from a plain round.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from consortia.config import ExperimentConfig
from consortia.errors import ConfigError
from consortia.federation.client import build_client_app
from consortia.federation.engines import inprocess
from consortia.federation.engines.inprocess import InProcessGrid, start_server_task
from consortia.federation.secure import check_secure, round_grid
from consortia.federation.server import ServerHooks, _initial_arrays, agree_preprocessing, shared_config
from consortia.verticals import get_vertical

BASE = {"vertical": "healthcare", "institutions": 5, "rows": 2500, "rounds": 2, "seed": 3}


def config_for(aggregation: str = "plain", **extra) -> ExperimentConfig:
    return ExperimentConfig.build(**{**BASE, **extra, "privacy": {"aggregation": aggregation}})


def flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


class Recorder:
    """The real ClientApp, recording every reply as it leaves the node; can make one node fail."""

    def __init__(self, fail_partition: int | None = None, fail_stage: str = "collect_masked_vectors") -> None:
        self.app = build_client_app()
        self.replies: list[tuple[int, str, Message]] = []
        self.fail_partition, self.fail_stage = fail_partition, fail_stage

    def __call__(self, message: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])  # type: ignore[arg-type]
        secagg = message.content.config_records.get(RECORD_KEY_CONFIGS)
        stage = str(secagg["stage"]) if secagg is not None and "stage" in secagg else message.metadata.message_type
        fitins = message.content.config_records.get("fitins.config")
        if fitins is not None and "secure-sum" in fitins:
            stage = f"sum:{stage}"  # a secure sum (summaries, histograms), not a model round
        if partition == self.fail_partition and stage == self.fail_stage:
            return Message(Error(code=0, reason="institution went offline"), reply_to=message)
        reply = self.app(message, context)
        self.replies.append((partition, stage, reply))
        return reply


def one_round(config: ExperimentConfig, recorder: Recorder) -> tuple[list[Message], list[int], dict[int, int]]:
    """Summaries, then one train round sent through the run's round grid; (replies, nodes, sizes)."""
    node_configs = [{"partition-id": i, "num-partitions": config.institutions} for i in range(config.institutions)]
    grid = InProcessGrid(recorder, node_configs, config.to_run_config())
    start_server_task(grid)
    vertical = get_vertical(config.vertical)
    hooks = ServerHooks()
    consortium = agree_preprocessing(grid, config, vertical, hooks, sums=grid)
    arrays = _initial_arrays(config, vertical, consortium)
    content = RecordDict(
        {"arrays": arrays, "config": ConfigRecord({**shared_config(consortium, hooks), "server-round": 1})}
    )
    messages = [Message(content, dst_node_id=n, message_type="train") for n in consortium.node_ids]
    train_sizes = {name: size["train"] for name, size in consortium.sizes.items()}
    replies = list(round_grid(grid, config, train_sizes, seed=config.seed).send_and_receive(messages))
    sizes = {n: consortium.sizes[consortium.names[n]]["train"] for n in consortium.node_ids}
    return replies, consortium.node_ids, sizes


@pytest.fixture(scope="module")
def plain_models() -> dict[int, tuple[np.ndarray, int]]:
    """Each institution's plaintext model after round 1 and its weight (partition -> (theta, n))."""
    replies, nodes, sizes = one_round(config_for("plain"), Recorder())
    return {
        i: (flat(r.content["arrays"].to_numpy_ndarrays()), sizes[n])
        for i, (n, r) in enumerate(zip(nodes, replies, strict=True))
    }


def weighted_mean(models: dict[int, tuple[np.ndarray, int]], keep: set[int]) -> np.ndarray:
    total = sum(n for i, (_, n) in models.items() if i in keep)
    return sum(theta * n for i, (theta, n) in models.items() if i in keep) / total


def test_secagg_round_equals_plain_fedavg_and_no_reply_holds_an_update(plain_models):
    recorder = Recorder()
    replies, _, _ = one_round(config_for("secagg+"), recorder)
    expected = weighted_mean(plain_models, set(plain_models))
    aggregates = [flat(r.content["arrays"].to_numpy_ndarrays()) for r in replies]
    for aggregate in aggregates:  # the strategy gets the consortium's mean for every institution
        assert np.abs(aggregate - expected).max() <= 1e-6 * np.abs(expected).max()
    # what left the nodes: the collect stage carried masked integer vectors, never a float update
    masked = [(p, r) for p, stage, r in recorder.replies if stage == "collect_masked_vectors"]
    assert len(masked) == 5
    for partition, reply in masked:
        assert all(len(a) == 0 for a in reply.content.array_records.values())  # the mod emptied the arrays
        vectors = reply.content.config_records[RECORD_KEY_CONFIGS]["masked_params"]
        values = np.concatenate([np.frombuffer(v, dtype=np.uint8) for v in vectors])  # type: ignore[union-attr]
        theta = plain_models[partition][0]
        assert theta.astype(np.float32).tobytes() not in values.tobytes()
        assert theta.astype(np.float64).tobytes() not in values.tobytes()
    # no train reply anywhere carries an array equal to an institution's plaintext model
    for _, _, reply in recorder.replies:
        for record in reply.content.array_records.values():
            for array in record.to_numpy_ndarrays():
                for theta, _ in plain_models.values():
                    assert array.size != theta.size or not np.allclose(array.ravel(), theta, atol=1e-9)


def test_secagg_survives_an_institution_dropping_out_mid_round(plain_models):
    recorder = Recorder(fail_partition=2)
    replies, _, _ = one_round(config_for("secagg+"), recorder)
    assert sum(r.has_error() for r in replies) == 1
    expected = weighted_mean(plain_models, {0, 1, 3, 4})  # the mean of those who stayed
    for reply in replies:
        if not reply.has_error():
            aggregate = flat(reply.content["arrays"].to_numpy_ndarrays())
            assert np.abs(aggregate - expected).max() <= 1e-6 * np.abs(expected).max()


def test_he_round_equals_plain_and_the_server_holds_only_ciphertexts(plain_models):
    config = config_for("he")
    from consortia.federation.secure.he import HEGrid, simulated_key

    with simulated_key("he") as (key, secret):
        recorder = Recorder()
        node_configs = [{"partition-id": i, "num-partitions": 5, **key} for i in range(5)]
        grid = InProcessGrid(recorder, node_configs, config.to_run_config())
        start_server_task(grid)
        he_grid = HEGrid(grid)
        vertical = get_vertical(config.vertical)
        consortium = agree_preprocessing(he_grid, config, vertical, ServerHooks(), sums=grid)
        arrays = _initial_arrays(config, vertical, consortium)
        content = RecordDict(
            {"arrays": arrays, "config": ConfigRecord({**shared_config(consortium, ServerHooks()), "server-round": 1})}
        )
        he_grid.send_and_receive([Message(content, dst_node_id=n, message_type="train") for n in consortium.node_ids])
        from consortia.privacy import he

        assert not he.load_context(he_grid.public_context).is_private()  # type: ignore[arg-type]
        train_replies = [r for _, stage, r in recorder.replies if stage == "train"]
        assert len(train_replies) == 5
        for reply in train_replies:  # ciphertext bytes only
            assert all(a.dtype == np.uint8 for a in reply.content["arrays"].to_numpy_ndarrays())
        sealed = he_grid.encrypted_model()
        size = int(plain_models[0][0].size)
        import base64

        decrypted = he.decrypt(secret, [base64.b64decode(c) for c in sealed["ciphertexts"]], size)  # type: ignore[index, arg-type]
    expected = weighted_mean(plain_models, set(plain_models))
    assert np.abs(decrypted - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("aggregation, tolerance", [("secagg+", 1e-3), ("he", 1e-4)])
def test_whole_run_matches_plain(aggregation, tolerance):
    plain = inprocess.run(config_for("plain"))
    recorder = Recorder()
    secure = inprocess.run(config_for(aggregation), client_app=recorder)
    # the protocol really ran: masked-vector stages (SecAgg+), or only ciphertext bytes in model replies (HE)
    stages = {stage for _, stage, _ in recorder.replies}
    if aggregation == "secagg+":
        assert "collect_masked_vectors" in stages and "train" not in stages
    else:
        models = [r for _, stage, r in recorder.replies if stage == "train"]
        assert models and all(a.dtype == np.uint8 for r in models for a in r.content["arrays"].to_numpy_ndarrays())
    a, b = flat(plain.final_parameters), flat(secure.final_parameters)
    assert np.abs(a - b).max() / np.abs(a).max() <= tolerance
    for name in plain.per_institution:
        for mode in ("global", "finetuned"):
            assert plain.per_institution[name][mode]["auroc"] == pytest.approx(
                secure.per_institution[name][mode]["auroc"], abs=5e-4
            )
    assert plain.pooled["global"]["auroc"] == pytest.approx(secure.pooled["global"]["auroc"], abs=5e-4)
    # the consortium's preprocessor from secure sums equals the one from plain summaries
    assert plain.preprocessor.categories == secure.preprocessor.categories
    assert np.allclose(plain.preprocessor.means, secure.preprocessor.means, rtol=1e-9)
    assert np.allclose(plain.preprocessor.stds, secure.preprocessor.stds, rtol=1e-6)


def test_a_secagg_node_refuses_a_plain_train_message():
    """Privacy is the node's: under secagg+ it never answers a plain train message with its update."""
    config = config_for("secagg+")
    grid = InProcessGrid(build_client_app(), [{"partition-id": 0, "num-partitions": 5}], config.to_run_config())
    start_server_task(grid)
    content = RecordDict({"arrays": ArrayRecord([np.zeros(3)]), "config": ConfigRecord({"preprocessor": "{}"})})
    with pytest.raises(ConfigError, match="only through SecAgg"):
        grid.send_and_receive([Message(content, dst_node_id=next(iter(grid.get_node_ids())), message_type="train")])


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"model": "xgboost"}, "cannot be masked or encrypted"),
        ({"model": "xgboost", "xgb_mode": "histogram"}, "gradient histograms"),
        ({"strategy": "krum"}, "individual update"),
        ({"strategy": "fedmedian"}, "individual update"),
        ({"institutions": 2}, "at least 3"),
        ({"institutions": 5, "fraction_train": 0.4}, "at least 3"),
    ],
)
def test_refusals_under_secure_aggregation(extra, match):
    with pytest.raises(ConfigError, match=match):
        check_secure(config_for("secagg+", **extra))


def test_he_refuses_server_side_steps_and_server_noise():
    with pytest.raises(ConfigError, match="individual update"):
        check_secure(config_for("he", strategy="fedadam"))
    dp = ExperimentConfig.build(**BASE, privacy={"aggregation": "he", "mechanism": "dp-client", "epsilon": 4})
    with pytest.raises(ConfigError, match="noise"):
        check_secure(dp)
    check_secure(config_for("secagg+", strategy="fedadam"))  # SecAgg+ gives FedAdam the mean it needs


def test_secured_preset_and_client_dp_with_secagg():
    config = ExperimentConfig.build(**{**BASE, "rounds": 2}, preset="secured", privacy={"epsilon": 8.0})
    assert config.privacy.aggregation == "secagg+" and config.privacy.mechanism == "dp-client"
    outcome = inprocess.run(config)
    assert len(outcome.rounds) == 2
    assert outcome.rounds[-1].metrics["privacy.epsilon"] <= 8.0


def test_demo_offers_the_secured_protocol_and_says_what_ran():
    """The healthcare page (every vertical page uses the same sidebar): SecAgg+ chosen, the run's
    caption names the aggregation, what the server saw, and what the federated phase cost."""
    from test_demo_app import _open_page, _small

    at = _open_page("healthcare")
    _small(at, "healthcare", 900)
    at.selectbox(key="healthcare:aggregation").set_value("secagg+").run()
    at.button(key="healthcare:run").click().run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Aggregation: secagg+" in captions and "masked vectors" in captions and "federated phase took" in captions


@pytest.mark.slow
def test_secagg_under_ray_equals_the_inprocess_engine():
    """Under Ray each node's records cross a process boundary and node ids are random; the
    stochastic quantisation is seeded per institution, so the digits agree."""
    from consortia.federation.engines import run_engine

    config = config_for("secagg+", institutions=3, rows=1500)
    local = inprocess.run(config)
    ray = run_engine(config.model_copy(update={"engine": "ray"}))
    a, b = flat(local.final_parameters), flat(ray.final_parameters)
    assert np.abs(a - b).max() / np.abs(a).max() <= 1e-6
    assert local.pooled["global"]["auroc"] == pytest.approx(ray.pooled["global"]["auroc"], abs=1e-9)


def test_an_error_reply_is_in_the_disclosure_log():
    """An error's reason text leaves the node too (Flower forwards exceptions): the log lists it."""
    from consortia.federation.grids import RecordingGrid

    config = config_for("secagg+")
    grid = InProcessGrid(build_client_app(), [{"partition-id": 0, "num-partitions": 5}], config.to_run_config())
    start_server_task(grid)
    recording = RecordingGrid(grid)
    node = next(iter(grid.get_node_ids()))
    content = RecordDict({"arrays": ArrayRecord([np.zeros(3)]), "config": ConfigRecord({"preprocessor": "{}"})})

    grid.client_app = lambda m, c: Message(Error(code=0, reason="refused: only through SecAgg+"), reply_to=m)
    (reply,) = recording.send_and_receive([Message(content, dst_node_id=node, message_type="train")])
    assert reply.has_error()
    entry = recording.log[node]["train"]
    assert entry["records"]["error"]["fields"] == ["code", "reason"] and entry["bytes"] == len(reply.error.reason)
