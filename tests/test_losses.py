"""CCC loss: values against NumPy, masking, finiteness, Keras wrapper, exactness under tf.distribute."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from script_result import run_script_result

from emorec.losses import (
    CCCLoss,
    ccc_from_moments,
    ccc_loss,
    ccc_moments,
    ccc_objective,
    global_moments,
    local_moments,
)


def numpy_ccc_loss(y_true, y_pred, mask=None):
    """Independent reference: biased moments over valid frames, mean of 1 − ρ over dimensions."""
    d = y_true.shape[-1]
    y = y_true.reshape(-1, d).astype(np.float64)
    x = y_pred.reshape(-1, d).astype(np.float64)
    if mask is not None:
        keep = mask.reshape(-1) > 0
        y, x = y[keep], x[keep]
    rho = []
    for i in range(d):
        cov = np.cov(x[:, i], y[:, i], bias=True)
        rho.append(2 * cov[0, 1] / (cov[0, 0] + cov[1, 1] + (x[:, i].mean() - y[:, i].mean()) ** 2))
    return float(np.mean(1 - np.array(rho))), np.array(rho)


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    y = rng.normal(0.2, 0.3, size=(4, 20, 2)).astype(np.float32)
    x = (0.7 * y + rng.normal(0.1, 0.2, size=y.shape)).astype(np.float32)
    mask = np.ones((4, 20), np.float32)
    mask[1, 15:] = 0
    mask[3, 5:] = 0
    return y, x, mask


def test_moments_are_the_sums_of_valid_frames(batch):
    y, x, mask = batch
    m = ccc_moments(y, x, mask).numpy()
    keep = mask.reshape(-1) > 0
    xv, yv = x.reshape(-1, 2)[keep].astype(np.float64), y.reshape(-1, 2)[keep].astype(np.float64)
    expected = np.stack([np.full(2, keep.sum()), xv.sum(0), yv.sum(0), (xv**2).sum(0), (yv**2).sum(0), (xv * yv).sum(0)])
    assert m.shape == (6, 2)
    assert m[0, 0] == 4 * 20 - 5 - 15
    np.testing.assert_allclose(m, expected, rtol=1e-12)


def test_loss_matches_numpy(batch):
    y, x, mask = batch
    ref, rho = numpy_ccc_loss(y, x)
    assert float(ccc_loss(y, x)) == pytest.approx(ref, abs=1e-6)
    np.testing.assert_allclose(ccc_from_moments(ccc_moments(y, x)).numpy(), rho, atol=1e-6)
    # For two dimensions the mean of (1 − ρ) is (1 − ρ_a)/2 + (1 − ρ_v)/2.
    assert ref == pytest.approx((1 - rho[0]) / 2 + (1 - rho[1]) / 2)
    ref_masked, _ = numpy_ccc_loss(y, x, mask)
    assert float(ccc_loss(y, x, mask)) == pytest.approx(ref_masked, abs=1e-6)
    assert abs(ref_masked - ref) > 1e-3  # the mask matters on this batch


def test_padded_values_do_not_move_the_loss(batch):
    y, x, mask = batch
    before = float(ccc_loss(y, x, mask))
    y2, x2 = y.copy(), x.copy()
    pad = mask == 0
    y2[pad] = 123.0
    x2[pad] = np.nan  # even NaN in padding must not leak in
    assert float(ccc_loss(y2, x2, mask)) == pytest.approx(before, abs=1e-7)
    xv = tf.Variable(x2)
    with tf.GradientTape() as tape:
        loss = ccc_loss(y2, xv, mask)
    grad = tape.gradient(loss, xv).numpy()
    assert np.all(np.isfinite(grad))
    assert np.all(grad[pad] == 0)


def test_perfect_prediction_gives_zero(batch):
    y, _, _ = batch
    assert float(ccc_loss(y, y)) == pytest.approx(0.0, abs=1e-6)


def test_constant_predictions_and_empty_batch_stay_finite(batch):
    y, _, mask = batch
    xv = tf.Variable(np.full(y.shape, 0.3, np.float32))
    with tf.GradientTape() as tape:
        loss = ccc_loss(y, xv, mask)
    grad = tape.gradient(loss, xv).numpy()
    # Constant predictions: cov = 0 so ρ = 0 and the loss is exactly 1.
    assert float(loss) == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # Constant gold equal to constant predictions: 0/0 without eps.
    yc = np.full(y.shape, 0.3, np.float32)
    with tf.GradientTape() as tape:
        loss = ccc_loss(yc, xv)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(tape.gradient(loss, xv).numpy()))
    # No valid frame at all.
    with tf.GradientTape() as tape:
        loss = ccc_loss(y, xv, np.zeros(mask.shape, np.float32))
    assert float(loss) == pytest.approx(1.0)
    assert np.all(np.isfinite(tape.gradient(loss, xv).numpy()))


def test_objective_returns_loss_and_named_terms(batch):
    y, x, mask = batch
    loss, terms = ccc_objective({"labels": y, "mask": mask}, {"emotion": x})
    ref, _ = numpy_ccc_loss(y, x, mask)
    _, rho = numpy_ccc_loss(y, x, mask)
    assert set(terms) == {"ccc_loss", "ccc_arousal", "ccc_valence"}
    assert float(loss) == pytest.approx(ref, abs=1e-6)
    assert float(terms["ccc_loss"]) == float(loss)
    assert float(terms["ccc_arousal"]) == pytest.approx(rho[0], abs=1e-6)
    assert float(terms["ccc_valence"]) == pytest.approx(rho[1], abs=1e-6)


def test_global_moments_is_identity_outside_a_strategy(batch):
    y, x, mask = batch
    m = ccc_moments(y, x, mask)
    np.testing.assert_array_equal(global_moments(m).numpy(), m.numpy())
    np.testing.assert_array_equal(local_moments(m).numpy(), m.numpy())


def test_keras_loss_uses_sample_weight_as_mask_and_serializes(batch):
    y, x, mask = batch
    loss = CCCLoss(eps=1e-7)
    ref, _ = numpy_ccc_loss(y, x, mask)
    assert float(loss(y, x, sample_weight=mask)) == pytest.approx(ref, abs=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, CCCLoss) and clone.eps == 1e-7 and clone.name == "ccc_loss"


def test_keras_fit_with_ccc_loss_lowers_it(batch):
    y, _, mask = batch
    rng = np.random.default_rng(0)
    feats = np.concatenate([y, rng.normal(size=y.shape)], axis=-1).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=CCCLoss())
    first = model.evaluate(feats, y, sample_weight=mask, verbose=0)
    model.fit(feats, y, sample_weight=mask, epochs=30, batch_size=4, verbose=0)
    last = model.evaluate(feats, y, sample_weight=mask, verbose=0)
    ref, _ = numpy_ccc_loss(y, model.predict(feats, verbose=0), mask)
    assert last == pytest.approx(ref, abs=1e-5)
    assert last < first - 0.2


_DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, os
    import numpy as np
    import tensorflow as tf
    # Must precede every other TF op: the device set can be configured only once.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from emorec.losses import ccc_loss, ccc_objective, local_moments

    rng = np.random.default_rng(3)
    B, T, F = 4, 12, 3
    feats = rng.normal(size=(B, T, F)).astype(np.float32)
    labels = rng.normal(0.1, 0.4, size=(B, T, 2)).astype(np.float32)
    mask = np.ones((B, T), np.float32)
    mask[1, 4:] = 0   # replica 0 holds rows 0-1: 16 valid frames
    mask[2, 9:] = 0   # replica 1 holds rows 2-3: 21 valid frames

    # float64 so that the comparison shows the algebra, not float32 summation order.
    feats = feats.astype(np.float64)

    def make_dense():
        layer = keras.layers.Dense(2, dtype="float64")
        layer.build((None, None, F))
        layer.set_weights([rng_w.normal(size=(F, 2)), rng_w.normal(size=(2,))])
        return layer

    rng_w = np.random.default_rng(7)
    single = make_dense()
    with tf.GradientTape() as tape:
        out = single(feats)
        loss_1 = ccc_loss(labels, out, mask)
        obj_1, _ = ccc_objective({"labels": labels, "mask": mask}, {"emotion": out})
    grads_1 = [g.numpy() for g in tape.gradient(loss_1, single.trainable_variables)]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        rng_w = np.random.default_rng(7)
        dense = make_dense()

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[2 * ctx.replica_id_in_sync_group: 2 * ctx.replica_id_in_sync_group + 2]))

    dx, dy, dm = shard(feats), shard(labels), shard(mask)

    def step(x, y, m, exact):
        with tf.GradientTape() as tape:
            out = dense(x)
            if exact:
                loss = ccc_loss(y, out, m)
                obj, _ = ccc_objective({"labels": y, "mask": m}, {"emotion": out})
            else:
                # The usual recipe: per-replica loss over the replica count, gradients summed.
                loss = ccc_loss(y, out, m, reduce_fn=local_moments) / strategy.num_replicas_in_sync
                obj = loss
        return loss, obj, tape.gradient(loss, dense.trainable_variables)

    result = {"n_replicas": strategy.num_replicas_in_sync, "single_loss": float(loss_1),
              "single_objective": float(obj_1), "single_grads": [g.tolist() for g in grads_1]}
    for exact in (True, False):
        run = tf.function(lambda x, y, m: strategy.run(step, args=(x, y, m, exact)))
        loss, obj, grads = run(dx, dy, dm)
        key = "exact" if exact else "naive"
        result[key + "_replica_losses"] = [float(v) for v in strategy.experimental_local_results(loss)]
        result[key + "_replica_objectives"] = [float(v) for v in strategy.experimental_local_results(obj)]
        result[key + "_loss_sum"] = float(strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None))
        summed = strategy.reduce(tf.distribute.ReduceOp.SUM, grads, axis=None)
        result[key + "_grads"] = [g.numpy().tolist() for g in summed]
    print("RESULT " + json.dumps(result))
    """
)


def test_distributed_loss_and_gradients_equal_single_device():
    r = run_script_result(_DISTRIBUTED_SCRIPT)
    assert r["n_replicas"] == 2
    single = r["single_loss"]
    # Every replica reports the global-batch loss.
    for value in r["exact_replica_losses"] + r["exact_replica_objectives"]:
        assert value == pytest.approx(single, rel=1e-6)
    assert r["single_objective"] == pytest.approx(single, rel=1e-6)
    g1 = [np.asarray(g) for g in r["single_grads"]]
    ge = [np.asarray(g) for g in r["exact_grads"]]
    gn = [np.asarray(g) for g in r["naive_grads"]]
    for a, b in zip(ge, g1):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    # Teeth: averaging per-replica CCCs is a different loss with different gradients.
    assert abs(r["naive_loss_sum"] - single) > 1e-3
    rel = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(gn, g1))
    assert rel > 1e-2
