"""Runtime speed, side by side in one process, as ratios of medians -> JSON.

For every status-ok artifact of ``RUN/export/export.json``, on the same model and threads:

1. wrapper overhead: ``EdgeModel.predict`` on one image at a time against a bare loop
   (LiteRT ``set_tensor``/``invoke``/``get_tensor``, ONNX Runtime ``InferenceSession.run``)
   that does the same preprocessing and int8 quantization by hand; also against the bare
   call alone on an already-prepared tensor (what preprocessing costs on top).
2. batching: ``EdgeModel.predict`` / ``evaluate`` over 1,000 images in batches against the
   per-image loop.
3. against Keras: each artifact on one image against ``model.predict`` (and a direct
   ``model(x)`` call) of the run's Keras model.

Loops alternate within each repeat; figures are medians over ``--repeats``.

    python benchmarks/runtime.py --run runs/target --threads 1 [--export runs/target/export]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _results import RESULTS, ROOT, machine, repo_path, write_result

sys.path.insert(0, str(ROOT))

from edge_transfer.core.records import ExportRecord
from edge_transfer.runtime import EdgeModel
from edge_transfer.train.runs import Run


def seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_loop(path: Path, threads: int, pre: Any) -> tuple[Callable, Callable]:
    """(run one raw image by hand, run one prepared tensor) with the runtime's own API."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        i_scale, i_zero = inp["quantization"]
        o_scale, o_zero = out["quantization"]
        quantized_in, quantized_out = inp["dtype"] != np.float32, out["dtype"] != np.float32

        def invoke(x: np.ndarray) -> np.ndarray:
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out["index"])

        def by_hand(image: np.ndarray) -> np.ndarray:
            x = pre.apply(image)
            if quantized_in:
                x = np.clip(np.rint(x / i_scale) + i_zero, -128, 127).astype(inp["dtype"])
            y = invoke(x)
            return (y.astype(np.float32) - o_zero) * o_scale if quantized_out else y

        return by_hand, invoke
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return (lambda image: run(pre.apply(image))), run


def bench_artifact(path: Path, images: np.ndarray, labels: np.ndarray, threads: int,
                   repeats: int, per_sample: int) -> dict[str, Any]:
    model = EdgeModel.load(path, threads=threads)
    by_hand, invoke = bare_loop(path, threads, model.preprocessing)
    singles = [images[i:i + 1] for i in range(per_sample)]
    prepared = [model.prepare(s) for s in singles]
    loops = {
        "edge_model_predict": lambda: [model.predict(s) for s in singles],
        "bare_with_preprocessing": lambda: [by_hand(s) for s in singles],
        "bare_invoke_prepared": lambda: [invoke(x) for x in prepared],
    }
    for fn in loops.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in loops}
    batch_times: dict[str, list[float]] = {"predict_batched": [], "evaluate_batched": [],
                                           "per_sample_loop": []}
    for _ in range(repeats):
        for key, fn in loops.items():
            times[key].append(seconds(fn) / per_sample * 1e3)
        batch_times["predict_batched"].append(seconds(lambda: model.predict(images)))
        batch_times["evaluate_batched"].append(
            seconds(lambda: model.evaluate(images, labels, latency_samples=3)))
        batch_times["per_sample_loop"].append(
            seconds(lambda: [model.predict(images[i:i + 1]) for i in range(len(images))]))
    ms = {k: statistics.median(v) for k, v in times.items()}
    total = {k: statistics.median(v) for k, v in batch_times.items()}
    return {
        "file": path.name, "runtime": model.runtime, "bytes": path.stat().st_size,
        "ms_per_sample": ms,
        "wrapper_overhead": ms["edge_model_predict"] / ms["bare_with_preprocessing"],
        "overhead_vs_bare_invoke": ms["edge_model_predict"] / ms["bare_invoke_prepared"],
        "seconds_1000": total,
        "batched_speedup": total["per_sample_loop"] / total["predict_batched"],
        "evaluate_speedup": total["per_sample_loop"] / total["evaluate_batched"],
    }


def bench_keras(run: Run, image: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    from edge_transfer.core.keras import load

    tf, keras = load()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran here (an export): rerun once it exists
        print("warning: TensorFlow was initialised by the export; Keras runs with its default "
              "threads (run the benchmark again for matched threads)", file=sys.stderr)
    model = keras.models.load_model(run.model_path)
    x = run.preprocessing.apply(image)
    calls = {"keras_model_predict": lambda: model.predict(x, verbose=0),
             "keras_direct_call": lambda: model(x, training=False)}
    for fn in calls.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            out[key].append(statistics.median(seconds(fn) for _ in range(20)) * 1e3)
    return {k: statistics.median(v) for k, v in out.items()}


def export_dir_of(run: Run, given: str | None) -> Path:
    """``--export DIR``, else ``RUN/export`` (exported now with the defaults when missing)."""
    if given:
        return Path(given)
    folder = run.path / "export"
    if not (folder / "export.json").is_file():
        from edge_transfer.export.config import ExportConfig
        from edge_transfer.export.pipeline import export_run

        export_run(run.path, ExportConfig())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory (exported or not)")
    parser.add_argument("--export", default=None,
                        help="export folder (default: RUN/export, exported when missing)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--per-sample", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "runtime.json"))
    args = parser.parse_args()
    machine_at_start = machine()
    run = Run.open(args.run)
    export_dir = export_dir_of(run, args.export)
    export = ExportRecord.load(export_dir)
    test = run.splits.test
    reps = -(-args.samples // len(test.y))
    images = np.concatenate([test.x.read()] * reps)[: args.samples]
    labels = np.concatenate([test.y] * reps)[: args.samples]
    results = {}
    for artifact in export.ok_artifacts:
        row = bench_artifact(export_dir / str(artifact.file), images, labels, args.threads,
                             args.repeats, args.per_sample)
        results[artifact.name] = row
        print(f"{artifact.name:<14} predict {row['ms_per_sample']['edge_model_predict']:.4f} "
              f"ms, bare {row['ms_per_sample']['bare_with_preprocessing']:.4f} ms "
              f"(x{row['wrapper_overhead']:.2f}), bare invoke "
              f"{row['ms_per_sample']['bare_invoke_prepared']:.4f} ms "
              f"(x{row['overhead_vs_bare_invoke']:.2f}); batched x{row['batched_speedup']:.1f}, "
              f"evaluate x{row['evaluate_speedup']:.1f}", flush=True)
    keras = bench_keras(run, images[:1], args.threads, args.repeats)
    for row in results.values():
        edge = row["ms_per_sample"]["edge_model_predict"]
        row["speedup_vs_keras_predict"] = keras["keras_model_predict"] / edge
        row["speedup_vs_keras_call"] = keras["keras_direct_call"] / edge
    report = {
        "benchmark": "runtime", "run": repo_path(run.path),
        "input_shape": list(run.preprocessing.input_shape), "threads": args.threads,
        "repeats": args.repeats, "samples": args.samples, "per_sample": args.per_sample,
        "machine": {**machine_at_start, "platform": platform.platform()},
        "keras_ms_per_sample": keras, "artifacts": results,
    }
    out = write_result(args.out, report)
    print(f"keras model.predict {keras['keras_model_predict']:.3f} ms, model(x) "
          f"{keras['keras_direct_call']:.3f} ms per sample; wrote {out}")


if __name__ == "__main__":
    main()
