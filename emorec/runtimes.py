"""The runtimes that run an export: TensorFlow (SavedModel), ONNX Runtime (``.onnx``) and LiteRT (``.tflite``).

Every runtime answers the same three calls, on numpy arrays, so prediction
(:mod:`emorec.predict`) and the export's own check (:mod:`emorec.export`)
never branch on the format:

``offline(inputs)``
    ``{name: (B, T, ...)}`` → ``(B, T, 2)`` arousal and valence, every
    sequence from a zero state.
``initial_state(batch)``
    the zeros ``(B, R, U)`` that start ``batch`` streams.
``step(inputs, states)``
    one chunk ``{name: (B, T, ...)}`` and the streams' states →
    ``((B, T, 2), new states)``.

A LiteRT model holds one stream (batch 1, see :mod:`emorec.export_formats`):
its runtime runs the rows of a batch one after the other, so callers may
still pass several. Loading checks the files first and turns every failure
(missing or corrupt model file, missing variables, a runtime package that is
not installed) into an :class:`~emorec.errors.ExportError` naming the path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from emorec.errors import ExportError
from emorec.rundir import ExportDir

logger = logging.getLogger(__name__)

RUNTIMES = ("savedmodel", "onnx", "litert")
STATES = "states"
NEXT_STATES = "next_states"  # the step's state output in ONNX and LiteRT (ONNX names must be unique)
OUTPUT_NAMES = ("arousal", "valence")
INSTALL_HINT = {"onnx": "pip install 'emorec[onnx]' (onnxruntime)", "litert": "pip install 'emorec[litert]' (ai-edge-litert)"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stack(out: dict) -> np.ndarray:
    return np.stack([np.asarray(out["arousal"]), np.asarray(out["valence"])], axis=-1).astype(np.float32)


class Runtime:
    """What every format offers: offline and streaming prediction on numpy arrays.

    Subclasses implement ``_offline`` and ``_step`` and say their batch limit.

    Inputs are float32 arrays by input name; outputs are ``(B, T, 2)`` arousal and valence.
    A format whose ``batch_limit`` is set is called one stream at a time and the rows are
    stacked.

    Args:
        info: the export's ``export.json`` (``inputs`` and the ``streaming`` state shape).
    """

    name = ""
    batch_limit: int | None = None  # None = any batch in one call

    def __init__(self, info: dict):
        stream = info.get("streaming")
        self.state_shape = tuple(stream["state_shape"]) if stream else None
        self.inputs = list(info["inputs"])

    @property
    def streaming(self) -> bool:
        """Whether this export has a streaming form (``step``)."""
        return self.state_shape is not None

    def initial_state(self, batch: int) -> np.ndarray:
        """The zeros that start ``batch`` streams.

        Args:
            batch: number of streams.

        Returns:
            The ``(batch, R, U)`` float32 zero states.

        Raises:
            ExportError: the export has no streaming form.
        """
        if not self.streaming:
            raise ExportError("this export has no streaming form (exported with --no-streaming)")
        return np.zeros((batch, *self.state_shape), np.float32)

    def offline(self, inputs: dict) -> np.ndarray:
        """``{name: (B, T, ...)}`` → ``(B, T, 2)``, each row from a zero state.

        Args:
            inputs: the model's inputs by name (extra names ignored), each ``(B, T, ...)``.

        Returns:
            The ``(B, T, 2)`` float32 arousal and valence.

        Raises:
            ValueError: an input the model reads is missing.
        """
        inputs = self._ordered(inputs)
        if self.batch_limit is None or len(next(iter(inputs.values()))) <= self.batch_limit:
            return self._offline(inputs)
        rows = len(next(iter(inputs.values())))
        return np.concatenate([self._offline({k: v[r:r + 1] for k, v in inputs.items()}) for r in range(rows)])

    def step(self, inputs: dict, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One chunk ``{name: (B, T, ...)}`` and states ``(B, R, U)`` → ``((B, T, 2), new states)``.

        Args:
            inputs: the chunk's inputs by name, each ``(B, T, ...)``.
            states: the ``(B, R, U)`` states the previous chunk returned (or
                :meth:`initial_state`'s zeros).

        Returns:
            ``(predictions, states)``: ``(B, T, 2)`` float32 arousal and valence and the
            ``(B, R, U)`` states to pass with the next chunk.

        Raises:
            ExportError: the export has no streaming form.
            ValueError: an input the model reads is missing.
        """
        if not self.streaming:
            raise ExportError("this export has no streaming form (exported with --no-streaming)")
        inputs = self._ordered(inputs)
        states = np.ascontiguousarray(states, np.float32)
        if self.batch_limit is None or len(states) <= self.batch_limit:
            return self._step(inputs, states)
        parts = [self._step({k: v[r:r + 1] for k, v in inputs.items()}, states[r:r + 1]) for r in range(len(states))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _ordered(self, inputs: dict) -> dict:
        missing = [k for k in self.inputs if k not in inputs]
        if missing:
            raise ValueError(f"inputs {missing} missing (the model reads {self.inputs})")
        return {k: np.ascontiguousarray(inputs[k], np.float32) for k in self.inputs}

    def _offline(self, inputs: dict) -> np.ndarray:
        raise NotImplementedError

    def _step(self, inputs: dict, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def load_saved_model(path: Path):
    """``tf.saved_model.load`` with the export's faults as one-line :class:`ExportError` s.

    Args:
        path: the ``saved_model/`` folder.

    Returns:
        The loaded object.

    Raises:
        ExportError: the folder, ``saved_model.pb`` or the variables are missing or unreadable.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(path)
    graph = path / "saved_model.pb"
    index = path / "variables" / "variables.index"
    if not path.is_dir():
        raise ExportError(f"{path}: no SavedModel in this export directory (exported without --format savedmodel?)")
    if not graph.is_file():
        raise ExportError(f"{graph}: missing; the SavedModel is incomplete, export again")
    try:
        saved_model_pb2.SavedModel.FromString(graph.read_bytes())
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ExportError(f"{graph}: not a readable SavedModel graph (corrupt or truncated: "
                          f"{_first_line(exc)}); export again") from None
    if not index.is_file():
        raise ExportError(f"{index}: missing; the SavedModel's weights are incomplete, export again")
    if not any(index.parent.glob("variables.data-*")):
        raise ExportError(f"{index.parent}: no variables.data-* file; the SavedModel's weights are missing, "
                          "export again")
    try:
        return tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError, DecodeError) as exc:
        raise ExportError(f"{path}: cannot load the SavedModel ({_first_line(exc)}); export again") from None


class SavedModelRuntime(Runtime):
    """The SavedModel's ``serving_default`` and ``step`` signatures, run by TensorFlow.

    Args:
        export_dir: a directory written by ``emorec export``.
        info: its ``export.json`` (see :func:`emorec.predict.read_export_info`).

    Raises:
        ExportError: the SavedModel is missing, incomplete or unreadable.
    """

    name = "savedmodel"

    def __init__(self, export_dir, info: dict):
        super().__init__(info)
        loaded = load_saved_model(ExportDir(export_dir).saved_model)
        self._loaded = loaded  # keeps the variables alive
        self._serve = loaded.signatures["serving_default"]
        self._step_fn = loaded.signatures.get("step")
        if self._step_fn is None:
            self.state_shape = None

    def _offline(self, inputs):
        import tensorflow as tf

        return _stack({k: v.numpy() for k, v in self._serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()})

    def _step(self, inputs, states):
        import tensorflow as tf

        out = self._step_fn(**{k: tf.constant(v) for k, v in inputs.items()}, states=tf.constant(states))
        return _stack({k: out[k].numpy() for k in OUTPUT_NAMES}), out[STATES].numpy()


def _model_file(export_dir, info: dict, fmt: str, part: str) -> Path | None:
    """The file of ``fmt``'s ``part`` (``offline``/``streaming``) named in ``export.json``, or None."""
    entry = (info.get("formats") or {}).get(fmt)
    if not entry:
        raise ExportError(f"{ExportDir(export_dir).info}: this export has no {fmt} model (it has "
                          f"{', '.join(available_runtimes(info)) or 'none'}); export with --format {fmt}")
    spec = entry.get(part)
    if spec is None:
        return None
    path = ExportDir(export_dir).path / spec["file"]
    if not path.is_file():
        raise ExportError(f"{path}: missing; export.json names it, export again")
    return path


class OnnxRuntime(Runtime):
    """``model.onnx`` and ``model_step.onnx`` in ONNX Runtime (CPU).

    Args:
        export_dir: a directory written by ``emorec export``.
        info: its ``export.json`` (see :func:`emorec.predict.read_export_info`).

    Raises:
        ExportError: onnxruntime is not installed, the export has no ONNX model, or a model
            file is missing or cannot be loaded.
    """

    name = "onnx"

    def __init__(self, export_dir, info: dict):
        super().__init__(info)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError(f"{ExportDir(export_dir).path}: running the ONNX model needs onnxruntime: "
                              f"{INSTALL_HINT['onnx']}") from None
        offline = _model_file(export_dir, info, "onnx", "offline")
        stream = _model_file(export_dir, info, "onnx", "streaming")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self._sessions = {}
        for part, path in (("offline", offline), ("streaming", stream)):
            if path is None:
                continue
            try:
                self._sessions[part] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for every fault
                raise ExportError(f"{path}: cannot load the ONNX model ({_first_line(exc)}); export again") from None
        if stream is None:
            self.state_shape = None

    def _run(self, part, feed):
        session = self._sessions[part]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed)))

    def _offline(self, inputs):
        return _stack(self._run("offline", inputs))

    def _step(self, inputs, states):
        out = self._run("streaming", {**inputs, STATES: states})
        return _stack(out), out[NEXT_STATES]


class LiteRTRuntime(Runtime):
    """``model.tflite`` and ``model_step.tflite`` in the LiteRT interpreter; one stream per call.

    Args:
        export_dir: a directory written by ``emorec export``.
        info: its ``export.json`` (see :func:`emorec.predict.read_export_info`).

    Raises:
        ExportError: ai-edge-litert is not installed, the export has no LiteRT model, or a
            model file is missing or cannot be loaded.
    """

    name = "litert"
    batch_limit = 1

    def __init__(self, export_dir, info: dict):
        super().__init__(info)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ExportError(f"{ExportDir(export_dir).path}: running the LiteRT model needs ai-edge-litert: "
                              f"{INSTALL_HINT['litert']}") from None
        offline = _model_file(export_dir, info, "litert", "offline")
        stream = _model_file(export_dir, info, "litert", "streaming")
        self._runners = {}
        for part, path in (("offline", offline), ("streaming", stream)):
            if path is None:
                continue
            try:
                interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
                self._runners[part] = (interpreter, interpreter.get_signature_runner())
            except Exception as exc:  # noqa: BLE001 - the interpreter raises ValueError or RuntimeError
                raise ExportError(f"{path}: cannot load the LiteRT model ({_first_line(exc)}); export again") from None
        if stream is None:
            self.state_shape = None

    def _offline(self, inputs):
        return _stack(self._runners["offline"][1](**inputs))

    def _step(self, inputs, states):
        out = self._runners["streaming"][1](**inputs, states=states)
        return _stack(out), np.array(out[NEXT_STATES])


RUNTIME_CLASSES = {"savedmodel": SavedModelRuntime, "onnx": OnnxRuntime, "litert": LiteRTRuntime}


def available_runtimes(info: dict) -> list[str]:
    """The formats an export holds, from its ``export.json`` (older exports: the SavedModel alone).

    Args:
        info: the export's ``export.json``.

    Returns:
        Names of :data:`RUNTIMES` with a model in the export, in that order.

    >>> formats = {"savedmodel": {"folder": "saved_model"}, "litert": {}}  # an empty entry: none
    >>> available_runtimes({"formats": formats})
    ['savedmodel']
    >>> available_runtimes({"saved_model": "saved_model"})  # written before ONNX and LiteRT
    ['savedmodel']
    """
    formats = info.get("formats")
    if formats is None:
        return ["savedmodel"] if info.get("saved_model") else []
    return [name for name in RUNTIMES if formats.get(name)]


def default_runtime(info: dict) -> str:
    """``savedmodel`` when the export holds it, else the first format it holds.

    Args:
        info: the export's ``export.json``.

    Returns:
        The runtime name (``savedmodel`` also when the export holds none, so that opening it
        reports what is missing).

    >>> default_runtime({"formats": {"onnx": {"offline": {"file": "model.onnx"}}}})
    'onnx'
    """
    have = available_runtimes(info)
    return "savedmodel" if "savedmodel" in have or not have else have[0]


def open_runtime(export_dir, info: dict, runtime: str | None = None) -> Runtime:
    """Load one format of an export for prediction.

    Args:
        export_dir: a directory written by ``emorec export``.
        info: its ``export.json``.
        runtime: ``savedmodel``, ``onnx`` or ``litert``; None = :func:`default_runtime`.

    Returns:
        The :class:`Runtime`.

    Raises:
        ExportError: an unknown runtime, a format the export lacks, a missing or corrupt model file,
            or a runtime package that is not installed.
    """
    runtime = default_runtime(info) if runtime is None else runtime
    if runtime not in RUNTIME_CLASSES:
        raise ExportError(f"unknown runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})")
    if runtime == "savedmodel" and "savedmodel" not in available_runtimes(info):
        raise ExportError(f"{ExportDir(export_dir).info}: this export has no savedmodel (it has "
                          f"{', '.join(available_runtimes(info)) or 'none'}); pick one with --runtime")
    return RUNTIME_CLASSES[runtime](export_dir, info)
