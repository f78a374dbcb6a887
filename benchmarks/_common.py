"""Shared helpers of the model benchmarks: machine description, timing, matmul reference, FLOP counting.

FLOPs are counted analytically from the built Keras model, as 2 × the
multiply-accumulates (MACs) of every convolution, transposed convolution,
dense layer and LSTM matmul (input and recurrent kernels). Element-wise work
(batch norm, activations, pooling, LSTM gate non-linearities, peepholes) is
not counted: it is a few percent of the total here and is the usual
convention. A layer with weights that the counter does not know raises
instead of being silently left out. Training FLOPs use the usual convention
backward = 2 × forward, so one step = 3 × the forward FLOPs.

The matmul reference is the best-of-N FLOP/s of a square float32 matmul in a
``tf.function``, measured in the same process as the model, so that the ratio
"model FLOP/s ÷ matmul FLOP/s" says how close the model gets to what this
machine can do right now, even when other jobs share the cores.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# -- machine ------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> str:
    """One paragraph: CPU model and count, load, TF/Keras versions, thread settings, devices."""
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load average n/a"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs ({affinity} usable), {load}; "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}; "
        f"TF threads intra={intra or 'default'} inter={inter or 'default'}; "
        f"GPUs: {len(gpus) or 'none'}"
    )


# -- timing -------------------------------------------------------------------------------------


def time_call(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; ``{"best", "median", "first"}`` seconds.

    ``fn`` must block until its work is done (return NumPy, or call
    ``.numpy()`` on the result); ``first`` is the first warm-up call
    (tracing and compilation included).
    """
    first = None
    for _ in range(warmup):
        start = time.perf_counter()
        _block(fn())
        first = time.perf_counter() - start if first is None else first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return {"best": min(times), "median": statistics.median(times), "first": first}


def _block(result) -> None:
    # Pulling one value to the host waits for the whole computation.
    for leaf in tf.nest.flatten(result):
        if hasattr(leaf, "numpy"):
            leaf.numpy()


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` FLOP/s of a ``size × size`` float32 matmul (2·n³ FLOPs) in a tf.function."""
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    b = tf.constant(rng.standard_normal((size, size), dtype=np.float32))

    @tf.function
    def product():
        # The sum makes the result small to fetch without changing the matmul cost.
        return tf.reduce_sum(tf.matmul(a, b))

    timing = time_call(product, repeats=repeats, warmup=2)
    return 2.0 * size**3 / timing["best"]


class MatmulReference:
    """The matmul FLOP/s measured several times during a run; the ratio uses the best measurement."""

    def __init__(self, size: int = 2048, repeats: int = 5):
        self.size = size
        self.repeats = repeats
        self.samples: list[float] = []

    def measure(self) -> float:
        """Measure once more and return this measurement."""
        value = matmul_flops(self.size, self.repeats)
        self.samples.append(value)
        return value

    @property
    def best(self) -> float:
        """The highest FLOP/s measured so far (measuring once if none)."""
        if not self.samples:
            self.measure()
        return max(self.samples)

    def adjacent(self) -> float:
        """The better of the last two measurements: the ones taken just before and just after a timed case."""
        if not self.samples:
            self.measure()
        return max(self.samples[-2:])

    def describe(self) -> str:
        """``matmul reference (n = ...): best X GFLOP/s, measurements ...``."""
        values = ", ".join(f"{v / 1e9:.1f}" for v in self.samples)
        return (f"float32 matmul reference ({self.size}x{self.size}, best of {self.repeats}): "
                f"{self.best / 1e9:.1f} GFLOP/s (measurements during the run: {values})")


class BestRatio:
    """``rate`` ÷ the reference's best matmul FLOP/s, read when printed: a later measurement may still raise the best."""

    def __init__(self, rate: float, reference: MatmulReference, target: float | None = None):
        self.rate = rate
        self.reference = reference
        self.target = target

    def __float__(self) -> float:
        return self.rate / self.reference.best

    def __str__(self) -> str:
        return f"{float(self):.2f}"

    def verdict(self) -> LateText:
        """``met`` / ``NOT met`` against ``target``, also decided when printed."""
        return LateText(lambda: verdict(float(self), self.target))


class LateText:
    """A table cell whose text is computed when the table is printed."""

    def __init__(self, make):
        self.make = make

    def __str__(self) -> str:
        return self.make()


# -- FLOP counting ------------------------------------------------------------------------------


def _first_node_shapes(layer) -> tuple[tuple, tuple]:
    # The first node is the call made when the enclosing model was built; later
    # calls (e.g. a streaming twin sharing the layer) have the same per-sample shapes.
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        raise ValueError(f"layer {layer.name} was never called, its shapes are unknown")
    node = nodes[0]
    return tuple(node.input_tensors[0].shape), tuple(node.output_tensors[0].shape)


def _static(shape: tuple, layer) -> int:
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(f"layer {layer.name}: dynamic shape {shape}; per-sample MACs need static shapes")
    return int(np.prod(dims)) if dims else 1


_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_UNCOUNTED_WEIGHTS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def layer_macs(layer) -> int:
    """MACs of one call of a weight-carrying layer on ONE sample (batch axis excluded)."""
    in_shape, out_shape = _first_node_shapes(layer)
    kernel = int(np.prod(layer.kernel.shape))
    if isinstance(layer, _TRANSPOSED):
        # Every kernel weight meets every input position once.
        return _static(in_shape, layer) * kernel
    if isinstance(layer, _CONV):
        if getattr(layer, "groups", 1) != 1:
            raise NotImplementedError(f"layer {layer.name}: grouped convolutions are not counted")
        return _static(out_shape, layer) * kernel
    if isinstance(layer, keras.layers.Dense):
        return _static(out_shape, layer) * kernel
    raise NotImplementedError(f"layer {layer.name} ({type(layer).__name__}): no MAC rule")


def per_sample_macs(model: keras.Model) -> int:
    """MACs of a per-frame network (static shapes but the batch axis) on one sample, nested models included."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += per_sample_macs(layer)
        elif isinstance(layer, _UNCOUNTED_WEIGHTS) or not layer.weights:
            continue
        else:
            total += layer_macs(layer)
    return total


def recurrent_head_macs(head) -> int:
    """MACs of one time step of a :class:`~emorec.models.recurrent.RecurrentHead` (all LSTMs + output Dense)."""
    total = 0
    for rnn in head.rnns:
        cell = rnn.cell
        total += int(np.prod(cell.kernel.shape))
        if hasattr(cell, "recurrent_kernel"):  # keras.layers.LSTM keeps a separate recurrent kernel
            total += int(np.prod(cell.recurrent_kernel.shape))
    return total + int(np.prod(head.output_layer.kernel.shape))


def sequence_model_macs(model: keras.Model) -> dict[str, int]:
    """MACs per frame of each top-level part of an emorec sequence model: ``{layer name: MACs}``.

    Nested models (the per-frame CNNs, encoders, decoders) run once per
    frame; a recurrent head once per time step. Parts without weights are
    left out; any other part with weights raises.
    """
    from emorec.models.recurrent import RecurrentHead

    parts = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            parts[layer.name] = per_sample_macs(layer)
        elif isinstance(layer, RecurrentHead):
            parts[layer.name] = recurrent_head_macs(layer)
        elif layer.weights:
            raise NotImplementedError(f"{model.name}: no MAC rule for top-level layer {layer.name}")
    return parts


# -- training ------------------------------------------------------------------------------------


def load_train_config(name: str):
    """The resolved ``train/NAME.yaml`` (a :class:`~emorec.config.TrainConfig`)."""
    from emorec.config import config_path_for, resolve_config

    return resolve_config(config_path_for(name))


XLA_MODE = {False: "off", True: "step", "update": "update"}  # a benchmark's jit choice -> StepContext.xla


def make_train_step(model, config, jit: bool | str = False):
    """The training engine's own step (:class:`emorec.training.steps.WindowedStep`) on one device.

    The model's objective with the config's ``loss:`` settings, ``model.losses``
    (weight decay), the gradient and the config's optimizer; returns the loss.
    ``jit``: False, True (the whole step under XLA) or ``"update"`` (only the optimizer's update).
    """
    from emorec.models import get_model_spec
    from emorec.tasks import get_task
    from emorec.training.engine import make_optimizer
    from emorec.training.steps import StepContext, WindowedStep

    spec = get_model_spec(config.model_name)
    optimizer = make_optimizer(config.optimizer)
    optimizer.build(model.trainable_variables)
    context = StepContext(model, optimizer, get_task(spec.task).objective(spec, config.loss),
                          tf.distribute.get_strategy(), config.data.batch_size,
                          [t.name for t in model.inputs], xla=XLA_MODE[jit])
    step = WindowedStep(context)
    return lambda batch: step(batch)["loss"]


def random_batch(batch: int, frames: int, modalities, face_size: int, seed: int = 0) -> dict:
    """A batch shaped like emorec.data's: ``audio``/``video`` as asked, ``labels``, ``mask``, ``target`` (all ones)."""
    from emorec.schema import FRAME_SAMPLES

    rng = np.random.default_rng(seed)
    out = {
        "labels": tf.constant(rng.uniform(-1, 1, (batch, frames, 2)).astype(np.float32)),
        "mask": tf.ones((batch, frames), tf.float32),
        "target": tf.ones((batch, frames), tf.float32),
    }
    if "audio" in modalities:
        out["audio"] = tf.constant(rng.standard_normal((batch, frames, FRAME_SAMPLES), dtype=np.float32) * 0.1)
    if "video" in modalities:
        out["video"] = tf.constant(rng.uniform(size=(batch, frames, face_size, face_size, 3)).astype(np.float32))
    return out


# -- misc ---------------------------------------------------------------------------------------


def add_tests_to_path() -> None:
    """Make ``tests/dataset_factory.py`` importable."""
    path = str(REPO / "tests")
    if path not in sys.path:
        sys.path.insert(0, path)


def print_table(headers: list[str], rows: list[list]) -> None:
    """Print a plain-text table (right-aligned numbers, left-aligned first column)."""
    text = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print(line(row))


def verdict(value: float, target: float) -> str:
    """``"met"`` or ``"NOT met"`` for ``value >= target``."""
    return "met" if value >= target else "NOT met"
