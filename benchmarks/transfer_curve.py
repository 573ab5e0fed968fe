"""The limited-data claim, measured: test accuracy vs training images per class.

Pretrain small-cnn on digits:0-4 once per seed, then for each shots value fine-tune on
digits:5-9 (transfer) and train the same architecture from random weights on the same
images and epoch budget (scratch). Writes benchmarks/results/transfer_curve.json and .png.

    python benchmarks/transfer_curve.py [--seeds 3] [--shots 3 5 10 20 all]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result

from edge_transfer.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", nargs="+", default=["3", "5", "10", "20", "all"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            src = pretrain(PretrainConfig(data="digits:0-4", out=Path(tmp, f"src{seed}"),
                                          seed=seed, verbose=0))
            for shots in args.shots:
                k = None if shots == "all" else int(shots)
                started = time.time()
                run = finetune(FinetuneConfig(data="digits:5-9", out=Path(tmp, f"t{seed}{shots}"),
                                              backbone=str(src), shots=k, seed=seed,
                                              baseline="scratch", verbose=0))
                m = json.loads((run / "metrics.json").read_text())
                rows.append({"seed": seed, "shots": shots, "transfer": m["test_accuracy"],
                             "scratch": m["scratch_test_accuracy"],
                             "seconds": time.time() - started})
                print(rows[-1], flush=True)
    cells = {}
    for shots in args.shots:
        for method in ("transfer", "scratch"):
            values = [r[method] for r in rows if r["shots"] == shots]
            cells[f"{method}@{shots}"] = {"mean": float(np.mean(values)),
                                          "std": float(np.std(values)), "n": len(values)}
    result = {"task": "pretrain small-cnn on digits:0-4, test accuracy on digits:5-9",
              "shots": args.shots, "seeds": args.seeds, "cells": cells, "runs": rows}
    write_result(args.out / "transfer_curve.json", result)
    plot(result, args.out / "transfer_curve.png")
    for shots in args.shots:
        t, s = cells[f"transfer@{shots}"], cells[f"scratch@{shots}"]
        print(f"shots {shots:>4}: transfer {t['mean']:.3f} +- {t['std']:.3f}   "
              f"scratch {s['mean']:.3f} +- {s['std']:.3f}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = result["shots"]
    xs = np.arange(len(shots))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in ("transfer", "scratch"):
        mean = [result["cells"][f"{method}@{s}"]["mean"] for s in shots]
        std = [result["cells"][f"{method}@{s}"]["std"] for s in shots]
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xticks(xs, shots)
    ax.set_xlabel("training images per class (digits 5-9)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"small-cnn, pretrained on digits 0-4; mean +- std of {result['seeds']} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from edge_transfer.atomic import atomic_path

    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)


if __name__ == "__main__":
    main()
