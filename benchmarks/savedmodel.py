"""SavedModel benchmark: the TFLite exporter's SavedModel, against TensorFlow's own way.

For a MobileNetV2 (random weights, ``--width``, ``--size`` px, a 5-class head) and its QAT
model (the export's own ``qat_layers.annotate_and_apply``): CPU seconds to write the
SavedModel every TFLite file converts from, and to convert the five TFLite precisions (the
QAT model: its int8) from it, two ways, interleaved, median of ``--repeats``:

- ``tensorflow``: the Keras model saved as it is (``tf.saved_model.save(model)``, which also
  traces every layer's functions) and the converter loading it twice per file, as it does;
- ``exporter``: what :class:`exporters.KerasSource` saves (the serving signature and the
  variables) and :func:`exporters.tflite_debug.converter` loads once.

It also says whether every file is the same bytes both ways (it must be).

    python benchmarks/savedmodel.py [--size 96] [--width 1.0] [--repeats 3]

Writes ``benchmarks/results/savedmodel.json`` with the machine, commit and load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _results import RESULTS, ROOT, machine, write_result

MODES = ("tensorflow", "exporter")


def models(size: int, width: float) -> dict[str, Any]:
    """The float model and its QAT model."""
    from edge_transfer.core.keras import load
    from edge_transfer.train import qat_layers

    _, keras = load()
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=width,
                                          weights=None, include_top=False, pooling="avg")
    model = keras.Model(base.input, keras.layers.Dense(5, activation="softmax")(base.output))
    return {"float": model, "qat": qat_layers.annotate_and_apply(model)[0]}


@contextlib.contextmanager
def tensorflows_way(source: Any) -> Iterator[None]:
    """``source`` with the Keras model saved as it is, and no load shared between files."""
    from edge_transfer.core.keras import load
    from exporters import tflite_debug

    tf, _ = load()
    path = Path(tempfile.mkdtemp(dir=source.workdir))

    @tf.function(input_signature=source.input_signature())
    def serve(x: Any) -> dict[str, Any]:
        return {"probabilities": source.model(x, training=False)}

    tf.saved_model.save(source.model, str(path), signatures=serve)
    source.__dict__["saved_model"] = path
    load_once, tflite_debug._load_once = tflite_debug._load_once, lambda *args: None
    try:
        yield
    finally:
        tflite_debug._load_once = load_once


def one(model: Any, mode: str, work: Path, qat: bool) -> dict[str, Any]:
    """Save and convert the five precisions (a QAT model: int8) once; CPU seconds of each
    step and the files."""
    from exporters import Calibration, ExportSpec, KerasSource, tflite, tflite_debug

    tflite_debug._LOADED.clear()
    source = KerasSource(model, Path(tempfile.mkdtemp(dir=work)))
    x = np.random.default_rng(0).random((32, *source.input_shape), np.float32)
    calibration = Calibration(x, source.input_name)
    specs = ((ExportSpec.int8().with_qat(),) if qat else
             (ExportSpec.fp32(), ExportSpec.fp16(), ExportSpec.dynamic(), ExportSpec.int8(),
              ExportSpec.int16x8()))
    with contextlib.ExitStack() as stack:
        start = time.process_time()
        if mode == "tensorflow":
            stack.enter_context(tensorflows_way(source))
        else:
            _ = source.saved_model
        saved = time.process_time() - start
        files = [tflite._convert(source, spec, calibration) for spec in specs]
        converted = time.process_time() - start - saved
    return {"save_cpu_seconds": round(saved, 2), "convert_cpu_seconds": round(converted, 2),
            "files": files}


def benchmark(size: int, width: float, repeats: int, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, model in models(size, width).items():
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for k in range(repeats):
            for mode in MODES if k % 2 == 0 else reversed(MODES):
                runs[mode].append(one(model, mode, work, qat=name == "qat"))
                print(f"{name} {mode} {k + 1}/{repeats}: "
                      f"save {runs[mode][-1]['save_cpu_seconds']} s, convert "
                      f"{runs[mode][-1]['convert_cpu_seconds']} s of CPU", flush=True)
        median = {mode: {key: statistics.median(r[key] for r in rs)
                         for key in ("save_cpu_seconds", "convert_cpu_seconds")}
                  for mode, rs in runs.items()}
        total = {mode: m["save_cpu_seconds"] + m["convert_cpu_seconds"]
                 for mode, m in median.items()}
        first = runs["tensorflow"][0]["files"]
        results[name] = {"median": median,
                         "ratio_exporter_to_tensorflow": round(
                             total["exporter"] / total["tensorflow"], 3),
                         "same_files": all(r["files"] == first for rs in runs.values()
                                           for r in rs)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="input px")
    parser.add_argument("--width", type=float, default=1.0, help="MobileNetV2 alpha")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "savedmodel.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    load = machine()
    with tempfile.TemporaryDirectory() as tmp:
        results = benchmark(args.size, args.width, args.repeats, Path(tmp))
    write_result(args.out, {"backbone": "mobilenet_v2", "width": args.width,
                            "input_size": args.size, "repeats": args.repeats,
                            "precisions": {"float": ["fp32", "fp16", "dynamic", "int8",
                                                     "int16x8"], "qat": ["int8-qat"]},
                            "models": results, "machine": {
                                **load, "load_average_1min_at_end": round(os.getloadavg()[0], 2)}})
    for name, row in results.items():
        print(f"{name}: exporter / tensorflow CPU {row['ratio_exporter_to_tensorflow']} "
              f"({row['median']}), same files: {row['same_files']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
