"""The device-side runtime: numpy + LiteRT / ONNX Runtime, never TensorFlow.

Each runtime is imported only when a model of its format is loaded, so a device
needs only the one it uses.

>>> from edge_transfer.runtime import EdgeModel

Loading is not run as a doctest (it needs an exported model file; tests/test_runtime.py
exports one):

>>> model = EdgeModel.load("model-int8.tflite", threads=4)        # doctest: +SKIP
>>> model.predict(images, top_k=3).top()[0]                      # doctest: +SKIP
[('7', 0.96), ('1', 0.03), ('9', 0.01)]
"""

from edge_transfer.runtime.model import EdgeModel, Evaluation, Prediction, peak_memory_mb

__all__ = ["EdgeModel", "Evaluation", "Prediction", "peak_memory_mb"]
