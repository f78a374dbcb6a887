"""The ``tf.data`` options every emorec input pipeline ends with.

TensorFlow 2.21's autotuner runs in a thread that sleeps up to a minute between
passes, and an iterator's destructor waits for that thread to wake. The training
loop makes a fresh iterator every epoch, so the old one's destruction could stand
still for tens of seconds: in the main job the end of the first epoch took 40 s in
some runs and under 1 s in others, the process idle all the while (gdb:
``~RootDataset::Iterator`` waiting on ``model::Model::OptimizeLoop``). Pipelines
without the autotuning thread end at once; their ``AUTOTUNE`` map and interleave
parallelism is the number of cores, and ``prefetch(AUTOTUNE)`` buffers still grow
as needed (prefetch's own autotuner needs no thread). ``benchmarks/data_pipeline.py``
measures the throughput.
"""

from __future__ import annotations

import tensorflow as tf


def without_autotune_thread(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning thread off (see the module docstring).

    Args:
        dataset: any ``tf.data.Dataset``.

    Returns:
        The same elements, with ``options().autotune.enabled`` False.

    >>> ds = without_autotune_thread(tf.data.Dataset.range(3).map(lambda x: x + 1, tf.data.AUTOTUNE))
    >>> [int(x) for x in ds.as_numpy_iterator()], ds.options().autotune.enabled
    ([1, 2, 3], False)
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
