"""The limited-data claim, measured: test accuracy vs training images per class.

Pretrain small-cnn on classes 0-4 once per seed, then for each shots value fine-tune on
classes 5-9 (transfer) and train the same architecture from random weights on the same
images and epoch budget (scratch). ``--data digits`` (default) or ``--data fashion``
(Fashion-MNIST; test split = the official t10k images). Writes
benchmarks/results/transfer_curve[_fashion].json and .png.

    python benchmarks/transfer_curve.py [--seeds 3] [--shots 3 5 10 20 all]
    python benchmarks/transfer_curve.py --data fashion     # shots 5 10 50 all, 3 seeds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _results import RESULTS, machine, write_result

from edge_transfer.core.records import RunMetrics
from edge_transfer.train.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain

TASKS: dict[str, dict[str, Any]] = {
    "digits": {"source": "digits:0-4", "target": "digits:5-9", "pretrain_epochs": 40,
               "shots": ["3", "5", "10", "20", "all"], "file": "transfer_curve"},
    "fashion": {"source": "fashion-mnist:0-4", "target": "fashion-mnist:5-9",
                "pretrain_epochs": 5, "shots": ["5", "10", "50", "all"],
                "file": "transfer_curve_fashion"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=tuple(TASKS), default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", nargs="+")
    parser.add_argument("--pretrain-epochs", type=int,
                        help="(default: 40 for digits, 5 for fashion)")
    parser.add_argument("--epochs", type=int, default=40, help="head stage budget")
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    task = TASKS[args.data]
    args.shots = args.shots or task["shots"]
    rows, load_at_start = [], machine()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            src = pretrain(PretrainConfig(data=task["source"], out=Path(tmp, f"src{seed}"),
                                          epochs=args.pretrain_epochs or task["pretrain_epochs"],
                                          seed=seed, verbose=0))
            for shots in args.shots:
                k = None if shots == "all" else int(shots)
                started = time.time()
                run = finetune(FinetuneConfig(data=task["target"],
                                              out=Path(tmp, f"t{seed}{shots}"),
                                              backbone=str(src), shots=k, seed=seed,
                                              epochs=args.epochs,
                                              finetune_epochs=args.finetune_epochs,
                                              baseline="scratch", verbose=0))
                m = RunMetrics.load(run)
                rows.append({"seed": seed, "shots": shots, "transfer": m.test_accuracy,
                             "scratch": m.scratch_test_accuracy,
                             **paired_gain(run, m), "seconds": time.time() - started})
                print(rows[-1], flush=True)
            result = summary(args, task, rows, load_at_start)  # kept after every seed
            write_result(args.out / f"{task['file']}.json", result)
    cells = result["cells"]
    plot(result, args.out / f"{task['file']}.png")
    for shots in args.shots:
        t, s = cells[f"transfer@{shots}"], cells[f"scratch@{shots}"]
        g = cells[f"gain@{shots}"]
        print(f"shots {shots:>4}: transfer {t['mean']:.3f} +- {t['std']:.3f}   "
              f"scratch {s['mean']:.3f} +- {s['std']:.3f}   transfer above scratch in "
              f"{g['seeds_above_scratch']}/{g['n']} seeds "
              f"({g['seeds_significantly_above']} of them with paired p < 0.05)")


def summary(args: argparse.Namespace, task: dict[str, Any], rows: list[dict[str, Any]],
            load_at_start: dict[str, Any]) -> dict[str, Any]:
    """Mean and std per method and shot count over the seeds run so far, with the runs."""
    cells = {}
    for shots in args.shots:
        same = [r for r in rows if r["shots"] == shots]
        for method in ("transfer", "scratch"):
            values = [r[method] for r in same]
            cells[f"{method}@{shots}"] = {"mean": float(np.mean(values)),
                                          "std": float(np.std(values)), "n": len(values)}
        above = [r for r in same if r["gain"] > 0]
        cells[f"gain@{shots}"] = {"seeds_above_scratch": len(above),
                                  "seeds_significantly_above": sum(r["gain_p"] < 0.05
                                                                   for r in above),
                                  "n": len(same)}
    result = {"task": f"pretrain small-cnn on {task['source']}, test accuracy on "
                      f"{task['target']}",
              "data": args.data, "shots": args.shots, "seeds": len({r["seed"] for r in rows}),
              "epochs": {"pretrain": args.pretrain_epochs or task["pretrain_epochs"],
                         "head": args.epochs, "finetune": args.finetune_epochs},
              "cells": cells, "runs": rows, "machine": load_at_start,
              "command": "python benchmarks/transfer_curve.py --data "
                         f"{args.data} --seeds {args.seeds} --shots {' '.join(args.shots)}"}
    return result


def paired_gain(run: Path, metrics: RunMetrics) -> dict[str, float]:
    """Transfer minus scratch on the same test images: the difference, its 95% interval
    and the exact McNemar p-value (a gain inside the noise has a wide interval)."""
    from edge_transfer.core import stats
    from edge_transfer.core.samples import decode
    from edge_transfer.train.runs import Run

    labels = Run.open(run).splits.get("test").y
    if metrics.scratch_test_predictions is None or metrics.test_predictions is None:
        raise SystemExit(f"{run}/metrics.json has no test predictions of both models")
    gain = stats.paired(decode(metrics.scratch_test_predictions) == labels,
                        decode(metrics.test_predictions) == labels)
    return {"gain": round(gain.difference, 4), "gain_low": round(gain.interval.low, 4),
            "gain_high": round(gain.interval.high, 4), "gain_p": gain.p_value}


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
    data = result.get("data", "digits")
    ax.set_xlabel(f"training images per class ({data} 5-9)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"small-cnn, pretrained on {data} 0-4; mean +- std of {result['seeds']} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from edge_transfer.core.atomic import atomic_path

    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)


if __name__ == "__main__":
    main()
