"""Writing Keras 1/2-layout ``.h5`` weight files with h5py, as old Keras did, for loader tests."""

from __future__ import annotations

import h5py
import numpy as np


def layer_arrays(model, *, keras1_names: bool = False) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``{layer: [(stored name, array)]}`` of every weighted layer of ``model`` (nested flattened).

    Keras 2 names arrays ``<layer>/<variable>:0``; Keras 1 ``<layer>_W`` / ``<layer>_b``.
    """
    import keras

    out = {}

    def visit(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            elif layer.weights:
                entries = []
                for variable in layer.weights:
                    if keras1_names:
                        short = {"kernel": "W", "bias": "b"}[variable.name]
                        stored = f"{layer.name}_{short}"
                    else:
                        stored = f"{layer.name}/{variable.name}:0"
                    entries.append((stored, np.asarray(variable.numpy())))
                out[layer.name] = entries

    visit(model)
    return out


def write_keras_h5(path, layers: dict, *, whole_model: bool = True) -> None:
    """Write ``layers`` in Keras 2's whole-model layout (``model_weights/...``) or weights-only."""
    with h5py.File(path, "w") as handle:
        if whole_model:
            handle.attrs["keras_version"] = b"2.1.5"
            root = handle.create_group("model_weights")
        else:
            root = handle
        root.attrs["layer_names"] = [name.encode() for name in layers]
        for name, entries in layers.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [stored.encode() for stored, _ in entries]
            for stored, array in entries:
                group.create_dataset(stored, data=array)
