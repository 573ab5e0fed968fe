"""Training steps/s reading an image folder from disk vs the same images as in-memory arrays.

Writes the 1,797 digits as PNG files (upscaled to --size px) into a class-per-folder tree,
then trains the same small-cnn classifier from ``tfdata.from_files`` (decode + preprocess
in parallel, cached after the first epoch) and from ``tfdata.from_arrays``. Reports steps/s
of the first epoch and of the later ones, the median of --repeats runs, and the ratio
disk / memory. Writes benchmarks/results/input_pipeline.json.

    python benchmarks/input_pipeline.py [--size 32] [--epochs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, machine, write_result
from PIL import Image

from edge_transfer.core.keras import load
from edge_transfer.data.image_files import list_image_folder, load_image_folder
from edge_transfer.data.load import load_dataset
from edge_transfer.data.tfdata import Batching, from_arrays, from_files
from edge_transfer.train.backbones import create
from edge_transfer.train.models import add_head


def write_folder(root: Path, size: int) -> Path:
    digits = load_dataset("digits")
    for i, (image, label) in enumerate(zip(digits.x, digits.y, strict=True)):
        folder = root / digits.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).resize((size, size), Image.BILINEAR).save(
            folder / f"{i:04d}.png")
    return root


def epoch_rates(dataset, steps: int, epochs: int, seed: int, shape) -> list[float]:
    """Steps/s of each epoch training a fresh small-cnn classifier on ``dataset``."""
    _, keras = load()
    keras.utils.set_random_seed(seed)
    model = add_head(create("small-cnn", shape).extractor, 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=epochs, callbacks=[Timer()], verbose=0)
    return [steps / t for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    machine_at_start = machine()
    results: dict[str, dict[str, list[float]]] = {"disk": {"first": [], "later": []},
                                                 "memory": {"first": [], "later": []}}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_folder(Path(tmp), args.size)
        paths, labels, _ = list_image_folder(root)
        memory = load_image_folder(root, (args.size, args.size))
        pre = create("small-cnn", memory.x.shape[1:]).preprocessing
        steps = -(-len(labels) // args.batch_size)
        for repeat in range(args.repeats):
            for name in ("memory", "disk"):  # alternate, so load drifts hit both alike
                batching = Batching(args.batch_size, shuffle=True, seed=repeat)
                if name == "disk":
                    ds = from_files(paths, labels, pre, batching)
                else:
                    ds = from_arrays(memory.x, memory.y, pre, batching)
                rates = epoch_rates(ds, steps, args.epochs, repeat, pre.input_shape)
                results[name]["first"].append(rates[0])
                results[name]["later"].append(statistics.median(rates[1:]))
                print(name, [round(r, 1) for r in rates], flush=True)
    summary = {name: {k: statistics.median(v) for k, v in parts.items()}
               for name, parts in results.items()}
    report = {
        "what": "training steps/s, small-cnn classifier, digits as PNG files vs arrays",
        "images": len(labels), "size": args.size, "batch_size": args.batch_size,
        "epochs": args.epochs, "repeats": args.repeats, "machine": machine_at_start,
        "steps_per_s": summary, "runs": results,
        "ratio_after_first_epoch": summary["disk"]["later"] / summary["memory"]["later"],
        "ratio_first_epoch": summary["disk"]["first"] / summary["memory"]["first"],
    }
    write_result(args.out / "input_pipeline.json", report)
    print(f"disk / memory steps/s after the first epoch: {report['ratio_after_first_epoch']:.2f}"
          f" (first epoch {report['ratio_first_epoch']:.2f})")


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
