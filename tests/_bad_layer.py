"""A small digits model with one layer made to quantize badly on purpose, as a run directory.

``conv2`` (the trap) reads one input channel that is always zero (conv1's last filter is dead:
zero kernel, negative bias, ReLU) through weights 1000x larger than the others. In float that
channel adds nothing; in int8 each of conv2's output channels gets one scale set by its
outlier weight, so every other weight rounds to zero and the layer's output is its bias. Only
conv2 breaks: its output range is the float one, and keeping conv2 in float repairs the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _small_runs import digits_splits, save_run

TRAP = "conv2"
OUTLIER = 1000.0


def build(keras, input_shape: tuple[int, int, int], classes: int,  # type: ignore[no-untyped-def]
          trap_name: str = TRAP):
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=trap_name)(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs)


def set_trap(model, trap_name: str = TRAP) -> None:  # type: ignore[no-untyped-def]
    """Kill conv1's last filter and give conv2 an outlier weight on it (float output unchanged)."""
    kernel, bias = model.get_layer("conv1").get_weights()
    kernel[..., -1] = 0.0
    bias[-1] = -1.0
    model.get_layer("conv1").set_weights([kernel, bias])
    kernel, bias = model.get_layer(trap_name).get_weights()
    kernel[1, 1, -1, :] = OUTLIER
    model.get_layer(trap_name).set_weights([kernel, bias])


def write_bad_layer_run(out: Path, *, epochs: int = 12, size: int = 16,
                        trap: bool = True, trap_name: str = TRAP) -> Path:
    """Train the model on digits:5-9 at ``size`` px, set the trap (unless ``trap`` is False:
    the same model, fine in int8), write a run directory. ``trap_name`` names the trap layer
    (``"Conv"``, as MobileNetV3's first convolution, is also an ONNX op type)."""
    from edge_transfer.train.runs import write_json

    keras, dataset, splits, pre = digits_splits(size)
    model = build(keras, pre.input_shape, dataset.num_classes, trap_name)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    x = pre.apply(splits.train.x)
    model.fit(x, splits.train.y, epochs=epochs, batch_size=32, verbose=0)
    if trap:
        set_trap(model, trap_name)
    # The dead channel gets no gradient, so the trap survives a short retraining that lets
    # the other filters take over what conv1's last filter did.
    model.fit(x, splits.train.y, epochs=max(2, epochs // 3), batch_size=32, verbose=0)
    save_run(out, model, dataset, pre)
    accuracy = float(np.mean(
        model.predict(pre.apply(splits.val.x), verbose=0).argmax(1) == splits.val.y))
    write_json(out / "metrics.json", {"val_accuracy": accuracy})
    return out
