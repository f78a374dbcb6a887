"""Chen & Jin's losses: values and gradients against numpy, reductions, targets, Keras forms, distribution."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from script_result import run_script_result

from emorec.loss_zoo import (
    KERAS_LOSSES,
    LOSSES,
    TubeLoss,
    ZooLossConfig,
    keras_loss,
    zoo_loss,
    zoo_objective,
)
from emorec.losses import local_moments


def _np_loss(name, y, x, eps=0.05):
    """One sequence's loss by hand (biased 1/T moments, eq. 3-5)."""
    err = x - y
    mse = np.mean(err**2)
    if name == "mse":
        return mse
    if name == "mae":
        return np.mean(np.abs(err))
    if name == "tube":
        return np.mean(np.maximum(np.abs(err) - eps, 0))
    cov = np.mean((y - y.mean()) * (x - x.mean()))
    if name == "mse_cov":
        return mse - cov
    if name == "mse_cc":
        return mse / (cov / (x.std() * y.std()) + 1)
    return 1 - 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 7, 2))
    x = 0.5 * y + rng.normal(scale=0.5, size=(3, 7, 2))
    mask = np.ones((3, 7))
    mask[1, 5:] = 0  # a padded tail
    mask[2, :] = 0  # an empty row: no sequence
    return y, x, mask


@pytest.mark.parametrize("name", LOSSES)
def test_per_sequence_values_match_numpy(batch, name):
    y, x, mask = batch
    rows = [(y[0], x[0]), (y[1, :5], x[1, :5])]
    expected = np.mean([np.mean([_np_loss(name, yy[:, d], xx[:, d]) for d in (0, 1)]) for yy, xx in rows])
    got = zoo_loss(y, x, mask, name=name, reduction="sequence", reduce_fn=local_moments)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_batch_values_match_numpy(batch, name):
    y, x, mask = batch
    keep = mask.reshape(-1) > 0
    yy, xx = y.reshape(-1, 2)[keep], x.reshape(-1, 2)[keep]
    expected = np.mean([_np_loss(name, yy[:, d], xx[:, d]) for d in (0, 1)])
    got = zoo_loss(y, x, mask, name=name, reduction="batch", reduce_fn=local_moments)
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_cov_gradient_is_eq_6():
    """∂(mse - cov)/∂ŷ_t = 2 (ŷ_t - y_t) / T - (y_t - ȳ) / T: the covariance part ignores the prediction."""
    rng = np.random.default_rng(1)
    y = rng.normal(size=(1, 9, 1))
    x = tf.Variable(rng.normal(size=(1, 9, 1)))
    with tf.GradientTape() as tape:
        loss = zoo_loss(y, x, name="mse_cov", targets=(0,), reduce_fn=local_moments, dtype="float64")
    grad = tape.gradient(loss, x).numpy()[0, :, 0]
    t = 9
    expected = 2 * (x.numpy()[0, :, 0] - y[0, :, 0]) / t - (y[0, :, 0] - y[0, :, 0].mean()) / t
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_padding_and_other_column_take_no_part(batch):
    y, x, mask = batch
    for name in LOSSES:
        base = zoo_loss(y, x, mask, name=name, targets=(1,), reduce_fn=local_moments)
        changed = x.copy()
        changed[1, 5:] += 100.0  # padding frames
        changed[..., 0] *= -3.0  # the untargeted column
        assert float(zoo_loss(y, changed, mask, name=name, targets=(1,), reduce_fn=local_moments)) == \
            pytest.approx(float(base), rel=1e-6)


def test_objective_terms_follow_the_targets(batch):
    y, x, mask = batch
    batch_dict = {"labels": tf.constant(y, tf.float32), "mask": tf.constant(mask, tf.float32)}
    loss, terms = zoo_objective(batch_dict, {"emotion": tf.constant(x, tf.float32)}, local_moments,
                                name="mse_cov", targets=(0,))
    assert set(terms) == {"loss_mse_cov", "ccc_arousal"}
    assert float(loss) == pytest.approx(float(zoo_loss(y, x, mask, name="mse_cov", targets=(0,),
                                                       reduce_fn=local_moments)), rel=1e-5)


def test_keras_losses_round_trip(batch):
    y, x, mask = batch
    for name, cls in KERAS_LOSSES.items():
        loss = keras_loss(ZooLossConfig(name=name), targets=(0, 1))
        assert isinstance(loss, cls)
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is cls and again.get_config() == loss.get_config()
        value = loss(tf.constant(y, tf.float32), tf.constant(x, tf.float32), sample_weight=tf.constant(mask))
        assert float(value) == pytest.approx(float(zoo_loss(y, x, mask, name=name, reduce_fn=local_moments)),
                                             rel=1e-5, abs=1e-6)
    tube = TubeLoss(epsilon=0.2, reduction_mode="batch")
    assert tube.get_config()["epsilon"] == 0.2 and tube.get_config()["reduction_mode"] == "batch"
    assert float(tube(y, x, sample_weight=mask)) == pytest.approx(
        float(zoo_loss(y, x, mask, name="tube", reduction="batch", tube_epsilon=0.2, reduce_fn=local_moments)),
        rel=1e-5)


_DISTRIBUTED = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from emorec.loss_zoo import LOSSES, zoo_loss

    rng = np.random.default_rng(2)
    y = rng.normal(size=(4, 6, 2))
    feats = rng.normal(size=(4, 6, 2))
    w0 = rng.normal(size=(2,))
    mask = np.ones((4, 6))
    mask[1, 2:] = 0   # replica 0 (rows 0-1) holds 8 frames, replica 1 (rows 2-3) 12
    mask[3, 5:] = 0

    def grad(w, f, yy, mm, name, reduction):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = zoo_loss(yy, f * w, mm, name=name, reduction=reduction, dtype="float64")
        return loss, tape.gradient(loss, w)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[2 * ctx.replica_id_in_sync_group: 2 * ctx.replica_id_in_sync_group + 2]))

    out = {}
    for name in LOSSES:
        for reduction in ("sequence", "batch"):
            loss1, g1 = grad(tf.constant(w0), feats, y, mask, name, reduction)
            run = tf.function(lambda f, yy, mm: strategy.run(
                lambda a, b, c: grad(tf.constant(w0), a, b, c, name, reduction), args=(f, yy, mm)))
            loss, g = run(shard(feats), shard(y), shard(mask))
            out[name + "/" + reduction] = {
                "single": [float(loss1), g1.numpy().tolist()],
                "replica_losses": [float(v) for v in strategy.experimental_local_results(loss)],
                "summed": strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None).numpy().tolist()}
    print("RESULT " + json.dumps(out))
    """
)


def test_exact_under_two_replicas():
    """Each replica holds the global batch's loss; the replicas' summed gradients are one device's."""
    result = run_script_result(_DISTRIBUTED)
    assert len(result) == 2 * len(LOSSES)
    for key, r in result.items():
        single_loss, single_grad = r["single"]
        for value in r["replica_losses"]:
            assert value == pytest.approx(single_loss, rel=1e-9), key
        np.testing.assert_allclose(r["summed"], single_grad, rtol=1e-9, err_msg=key)
