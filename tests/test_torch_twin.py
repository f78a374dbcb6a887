"""benchmarks/torch_twin.py: the PyTorch twins compute what the emorec models compute (skipped without torch)."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import torch_twin  # noqa: E402

from emorec.losses import local_moments  # noqa: E402
from emorec.models import get_model_spec  # noqa: E402
from emorec.tasks import get_task  # noqa: E402

# Small versions of the benchmarked networks (the frame stays 640 samples); dropout off so that
# training-mode passes are deterministic.
SMALL = {
    "e2e_audio": {"recurrent": "keras", "lstm_units": 8, "audio_dropout": 0.0},
    "ae_lstm": {"face_size": 32, "face_latent": 16, "lstm_units": 8, "audio_dropout": 0.0},
}


def _pair(name, target="all"):
    """(emorec model, its twin, a batch, emorec's objective, the twin's objective)."""
    keras.utils.set_random_seed(3)
    spec = get_model_spec(name)
    config = spec.config_class.for_model(name, SMALL[name])
    model = spec.builder(config)
    # Batch-norm statistics and affine terms away from their initial 0 / 1, so the check sees them.
    rng = np.random.default_rng(1)
    for weight in model.weights:
        leaf = weight.path.rsplit("/", 1)[-1]
        if leaf in ("moving_mean", "beta"):
            weight.assign(rng.normal(0.0, 0.1, weight.shape).astype(np.float32))
        elif leaf in ("moving_variance", "gamma"):
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype(np.float32))
    twin = torch_twin.build_twin(name, config, model)
    arrays = torch_twin.make_batch(spec.modalities, 2, 3, getattr(config, "face_size", 0), target, seed=5)
    task = get_task(spec.task)
    loss_config = (spec.loss_config_class or task.loss_config_class)()
    return model, twin, arrays, task.objective(spec, loss_config), torch_twin.make_objective(name, loss_config)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_inference_outputs_and_loss_agree(name):
    model, twin, arrays, objective, twin_objective = _pair(name)
    gaps = torch_twin.forward_gaps(model, twin, arrays, objective, twin_objective)
    assert set(gaps) == {t for t in model.output} | {"loss"}
    for key, (gap, scale) in gaps.items():
        assert scale > 1e-3, key  # a non-trivial output
        assert gap <= 1e-5 * (1.0 + scale), (key, gap)
    assert torch_twin.gaps_within_tolerance(gaps)


@pytest.mark.parametrize(("name", "target"), [("e2e_audio", "all"), ("ae_lstm", "last")])
def test_training_loss_and_gradients_agree(name, target):
    """Training mode (batch statistics): same loss, and every gradient equal once laid out as torch's."""
    model, twin, arrays, objective, twin_objective = _pair(name, target)
    names = [t.name for t in model.inputs]
    with tf.GradientTape() as tape:
        outputs = model({k: tf.constant(arrays[k]) for k in names}, training=True)
        loss, _ = objective(torch_twin.tf_batch(arrays), outputs, reduce_fn=local_moments)
        loss = loss + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)

    batch = torch_twin.torch_batch(arrays)
    twin.train()
    twin_loss = twin_objective(twin, batch, twin(**{k: batch[k] for k in names}))
    twin_loss.backward()
    assert float(twin_loss.detach()) == pytest.approx(float(loss), rel=1e-5)

    # Keras' gradients, written into the model's variables, go through the same weight copier.
    for variable, grad in zip(model.trainable_variables, grads):
        variable.assign(grad)
    laid_out = torch_twin.TWINS[name](get_model_spec(name).config_class.for_model(name, SMALL[name]))
    torch_twin.copy_weights(model, laid_out)
    expected = dict(laid_out.named_parameters())
    compared = 0
    for key, parameter in twin.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None and not parameter.detach().any(), key  # torch's bias_hh: zero, frozen
            continue
        want = expected[key].detach().numpy()
        got = parameter.grad.numpy()
        assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(want) + 1e-7, key
        compared += 1
    assert compared == len(model.trainable_variables)


def test_feature_orders_by_hand():
    speech = torch_twin.speech_feature_order()
    # torch's feature g · 320 + t is emorec's t · 4 + g.
    assert (speech[0], speech[1], speech[320], speech[320 * 3 + 319]) == (0, 4, 1, 319 * 4 + 3)
    assert sorted(speech) == list(range(1280))
    face = torch_twin.face_feature_order(8)  # a 2 × 2 × 32 map
    # torch's (c, h, w) = c · 4 + h · 2 + w is emorec's (h · 2 + w) · 32 + c.
    assert (face[1], face[2], face[4], face[5]) == (32, 64, 1, 33)


def test_twins_refuse_settings_they_do_not_reproduce():
    spec = get_model_spec("e2e_audio")
    with pytest.raises(ValueError, match="recurrent: keras"):
        torch_twin.E2EAudioTwin(spec.config_class.for_model("e2e_audio", {"recurrent": "peephole"}))
    ae = get_model_spec("ae_lstm").config_class
    with pytest.raises(ValueError, match="audio_latent: null"):
        torch_twin.AELSTMTwin(ae.for_model("ae_lstm", {"audio_latent": 640}))
