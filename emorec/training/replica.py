"""One replica's training update, shared by every training step (windowed, stateful, clips).

The objective's moments are summed across replicas (:mod:`emorec.losses`),
so its value is the global-batch loss and its gradient that replica's share;
regularisation (``model.losses``, the same on every replica) is divided by
the number of replicas. Keras 3's TensorFlow optimizer all-reduces the
gradients with SUM inside ``apply_gradients``, so the update uses exactly the
single-device gradient of ``loss + Σ model.losses``.
"""

from __future__ import annotations

import tensorflow as tf


def numeric(batch: dict) -> dict:
    """The batch without its string tensors.

    Recording ids cannot go to accelerators, and the steps need none.

    Args:
        batch: a dict of tensors (a data batch).

    Returns:
        A new dict without the ``tf.string`` entries.
    """
    return {k: v for k, v in batch.items() if v.dtype != tf.string}


def compiled_update(optimizer, variables):
    """The optimizer's update of ``variables`` as one XLA-compiled function of the gradients.

    ``training.jit_compile: update``: on the CPU the compiled Adam update of the
    85M weights of ae_lstm takes 0.07 s against 0.22 s op by op, while its
    gradient runs faster op by op (0.60 s against 0.63 s compiled, batch 16;
    benchmarks/xla.py). One device only: the update holds no cross-replica sum.

    Args:
        optimizer: the built Keras optimizer.
        variables: the trainable variables, in the order of the gradients.

    Returns:
        ``update(grads)``, applying ``optimizer`` to ``variables``.
    """

    @tf.function(jit_compile=True)
    def update(grads):
        optimizer.apply_gradients(zip(grads, variables))

    return update


def replica_update(model, forward_model, inputs, batch, objective, optimizer, replicas: int, apply=None):
    """One replica's training update; returns (the logged terms as float32, the forward outputs).

    Args:
        model: the model whose trainable weights are updated.
        forward_model: runs ``inputs`` (``model`` itself, or a twin sharing its weights).
        inputs: the model inputs of this replica's slice of the batch.
        batch: the whole replica batch (labels, mask...) for the objective.
        objective: ``objective(batch, outputs, reduce_fn) -> (loss, terms)``.
        optimizer: the Keras optimizer.
        replicas: replicas in sync (regularisation share).
        apply: ``apply(grads)`` updating the weights (:func:`compiled_update`); None: the
            optimizer's ``apply_gradients``, op by op.

    Returns:
        ``(terms, outputs)``: ``terms`` holds the objective's terms plus ``objective``,
        ``regularization`` and ``loss``.
    """
    from emorec.losses import global_moments

    with tf.GradientTape() as tape:
        outputs = forward_model(inputs, training=True)
        loss, terms = objective(batch, outputs, reduce_fn=global_moments)
        reg = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
        # Every replica holds the same weights, so each adds its 1/replicas share of
        # the penalty and the SUM of the replica gradients counts it once.
        scaled = loss + reg / replicas
    grads = tape.gradient(scaled, model.trainable_variables)
    if apply is not None:
        apply(grads)
    else:
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    out = {k: tf.cast(v, tf.float32) for k, v in terms.items()}
    out["objective"] = tf.cast(loss, tf.float32)
    out["regularization"] = tf.cast(reg, tf.float32)
    out["loss"] = out["objective"] + out["regularization"]
    return out, outputs


def reduce_terms(strategy, per_replica: dict) -> dict:
    """Per-replica terms to one value each.

    Replicas agree on the global terms; MEAN averages the local ones.

    Args:
        strategy: the ``tf.distribute`` strategy the step ran under.
        per_replica: ``{term: per-replica scalar}`` from :func:`replica_update`.

    Returns:
        ``{term: scalar tensor}``, each the mean over replicas.
    """
    return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}
