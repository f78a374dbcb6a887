"""Loading pretrained weights from Keras 1/2 ``.h5`` files into emorec models, by layer name.

Two HDF5 layouts are read (both written by Keras 2, the second also by Keras 1):

* a whole-model file (``model.save("x.h5")``): the weights sit under the group
  ``model_weights``; each layer is a group ``model_weights/<layer>`` whose
  attribute ``weight_names`` lists its arrays in order, stored at
  ``model_weights/<layer>/<weight name>``, e.g.
  ``model_weights/Conv2d_1a_3x3/Conv2d_1a_3x3/kernel:0``;
* a weights-only file (``model.save_weights("x.h5")``): the same layer groups
  at the root (``/<layer>/<layer>/kernel:0``); Keras 1 named the arrays
  ``<layer>_W`` and ``<layer>_b``.

A layer group without ``weight_names`` contributes its datasets in the order
h5py visits them. Arrays are matched to a layer's variables in Keras' order
(conv/dense: kernel, bias; batch norm: gamma (when scaled), beta, moving mean,
moving variance), which Keras 1, 2 and 3 share; where both names are
recognisable they must also agree.

Every layer of the model that holds weights must be in the file with arrays of
exactly the right shapes; the check runs over the whole model before anything
is assigned, so a wrong file leaves the model untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from emorec.errors import ConfigError

logger = logging.getLogger(__name__)

# Keras 1 spelled these differently; map them to the Keras 2/3 variable names.
_NAME_ALIASES = {"W": "kernel", "b": "bias", "running_mean": "moving_mean"}
_KNOWN_NAMES = {
    "kernel",
    "bias",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
    "recurrent_kernel",
    "depthwise_kernel",
    "pointwise_kernel",
}


def _decode(name) -> str:
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def canonical_weight_name(name: str, layer_name: str = "") -> str:
    """Reduce a stored weight name to Keras 3's variable name.

    Args:
        name: as stored, e.g. ``"Conv2d_1a_3x3/kernel:0"`` or Keras 1's ``"conv1_W"``.
        layer_name: the layer the weight belongs to (strips Keras 1's ``<layer>_`` prefix).

    Returns:
        ``"kernel"``, ``"bias"``, ``"moving_mean"`` ... (or the bare name when unknown).

    >>> canonical_weight_name("Block35_1_Conv2d_1x1/bias:0")
    'bias'
    >>> canonical_weight_name("conv3a_W", "conv3a")
    'kernel'
    """
    base = name.rsplit("/", 1)[-1].split(":", 1)[0]
    if layer_name and base.startswith(layer_name + "_"):
        base = base[len(layer_name) + 1 :]
    return _NAME_ALIASES.get(base, base)


def read_keras_h5_weights(path: str | Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Read every layer's weight arrays from a Keras 1/2 ``.h5`` file.

    Args:
        path: a whole-model or weights-only file (layouts in the module docstring).

    Returns:
        ``{layer name: [(stored weight name, array), ...]}`` in the stored order;
        layers without weights are left out.

    Raises:
        ConfigError: the file is missing or is not an HDF5 file of these layouts.
    """
    import h5py  # a Keras dependency; imported here so the module loads without it

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: weight file does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{path}: not an HDF5 weight file ({exc})") from exc
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" in root.attrs:
            names = [_decode(n) for n in root.attrs["layer_names"]]
        else:
            names = [n for n in root.keys() if isinstance(root[n], h5py.Group)]
        layers: dict[str, list[tuple[str, np.ndarray]]] = {}
        for name in names:
            if name not in root:
                continue
            group = root[name]
            if "weight_names" in group.attrs:
                weight_names = [_decode(n) for n in group.attrs["weight_names"]]
            else:
                weight_names = []
                group.visit(
                    lambda key, g=group, out=weight_names: (
                        out.append(key) if isinstance(g[key], h5py.Dataset) else None
                    )
                )
            arrays = []
            for weight_name in weight_names:
                if weight_name not in group:
                    raise ConfigError(
                        f"{path}: layer {name!r} lists weight {weight_name!r}, which is not stored"
                    )
                arrays.append((weight_name, np.asarray(group[weight_name])))
            if arrays:
                layers[name] = arrays
    if not layers:
        raise ConfigError(f"{path}: no layer weights found (not a Keras 1/2 .h5 weight file)")
    return layers


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of ``model`` that own variables, nested models flattened, in model order.

    Args:
        model: a Keras model (functional or sequential).

    Returns:
        Layers (not models) whose ``weights`` are non-empty.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def _shapes(arrays) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in np.shape(a)) for a in arrays]


def load_h5_weights_by_name(
    model: keras.Model,
    path: str | Path,
    *,
    layers: list[keras.layers.Layer] | None = None,
) -> list[str]:
    """Assign weights stored in a Keras 1/2 ``.h5`` file to ``model``'s layers of the same name.

    Args:
        model: the receiving model.
        path: the weight file (extra layers in it are ignored).
        layers: the layers to fill (default: every layer of ``model`` holding weights).

    Returns:
        The names of the layers that were filled, in model order.

    Raises:
        ConfigError: the file is unreadable, lacks one of the layers, or stores a
            different number or shape of arrays for one; the message names the
            file, the first such layer in model order and both shapes.
    """
    path = Path(path).expanduser()
    stored = read_keras_h5_weights(path)
    targets = weighted_layers(model) if layers is None else list(layers)
    plan = []
    for layer in targets:
        variables = list(layer.weights)
        model_shapes = [tuple(int(d) for d in v.shape) for v in variables]
        if layer.name not in stored:
            raise ConfigError(
                f"{path}: no weights for layer {layer.name!r} (the model expects shapes "
                f"{model_shapes}); the file holds {len(stored)} other layers, e.g. "
                f"{', '.join(list(stored)[:5])}: is it a weight file of this architecture?"
            )
        entries = stored[layer.name]
        file_shapes = _shapes([array for _, array in entries])
        if len(entries) != len(variables):
            raise ConfigError(
                f"{path}: layer {layer.name!r} stores {len(entries)} arrays of shapes "
                f"{file_shapes}, but the model's layer has {len(variables)} of shapes "
                f"{model_shapes}"
            )
        for variable, (stored_name, array), model_shape, file_shape in zip(
            variables, entries, model_shapes, file_shapes
        ):
            want = canonical_weight_name(variable.name)
            have = canonical_weight_name(stored_name, layer.name)
            if want in _KNOWN_NAMES and have in _KNOWN_NAMES and want != have:
                raise ConfigError(
                    f"{path}: layer {layer.name!r}: the file's array {stored_name!r} stands "
                    f"where the model expects {want!r} (shapes {file_shape} vs {model_shape})"
                )
            if file_shape != model_shape:
                raise ConfigError(
                    f"{path}: layer {layer.name!r}: {want} has shape {file_shape} in the file "
                    f"but {model_shape} in the model"
                )
            plan.append((variable, array))
    for variable, array in plan:
        variable.assign(np.asarray(array, dtype=variable.dtype))
    names = [layer.name for layer in targets]
    unused = sorted(set(stored) - set(names))
    logger.info(
        "%s: loaded %d layers by name; %d layers of the file unused%s",
        path,
        len(names),
        len(unused),
        f" ({', '.join(unused[:8])}{', ...' if len(unused) > 8 else ''})" if unused else "",
    )
    return names
