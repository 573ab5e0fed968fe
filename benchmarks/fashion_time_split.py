"""Where a 10-shot fine-tune on a large dataset spends its wall time (issue 10, item 4):
the seconds by phase that run.json records (data, training, evaluation) for

    edge-transfer finetune --data fashion-mnist:5-9 --backbone SRC --shots 10 \\
        --baseline scratch --source-data fashion-mnist:0-4

with SRC a pretrain run of small-cnn on fashion-mnist:0-4 (5 epochs). Goal: evaluation (the
per-epoch validation of every stage plus the final figures) at most 1/3 of the wall time.

    python benchmarks/fashion_time_split.py [--source SRC] [--what TEXT]

Without ``--source`` the source run is trained first (``edge-transfer pretrain --data
fashion-mnist:0-4 --epochs 5``, tens of minutes on 2 cores). The previous "after" of
benchmarks/results/fashion_time_split.json becomes "before"; one run each, so on a shared
machine compare the split, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, machine, write_result

from edge_transfer.core.records import RunInfo, RunMetrics
from edge_transfer.train.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain

COMMAND = ("edge-transfer finetune --data fashion-mnist:5-9 --backbone SRC --shots 10 "
           "--baseline scratch --source-data fashion-mnist:0-4 (SRC: edge-transfer pretrain "
           "--data fashion-mnist:0-4 --epochs 5, test accuracy {source:.3f})")
METRICS = ("test_accuracy", "test_samples", "val_accuracy", "val_samples",
           "scratch_test_accuracy", "scratch_val_accuracy", "source_accuracy_before",
           "source_accuracy_after", "source_samples", "source_head", "train_accuracy")


def measure(source: Path, out: Path) -> dict[str, Any]:
    """One fine-tune: the wall seconds run.json records (start to metrics, as before), with
    writing the run included, seconds by phase, the evaluation share, epochs and metrics."""
    started = time.time()
    run = finetune(FinetuneConfig(data="fashion-mnist:5-9", out=out, backbone=str(source),
                                  shots=10, baseline="scratch",
                                  source_data="fashion-mnist:0-4", verbose=0))
    written = time.time() - started
    info, metrics = RunInfo.load(run), RunMetrics.load(run)
    if not info.seconds or not info.seconds_by_phase:
        raise SystemExit(f"{run}/run.json has no timing: train it with this release")
    phases, seconds = info.seconds_by_phase, float(info.seconds)
    return {"seconds": round(seconds, 1), "seconds_with_writing": round(written, 1),
            "seconds_by_phase": phases,
            "evaluation_share": round(phases["evaluation"] / seconds, 3),
            "epochs": {stage: len(h["loss"]) for stage, h in
                       json.loads((run / "history.json").read_text()).items()},
            "metrics": {k: v for k, v in metrics.to_dict().items() if k in METRICS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="a pretrain run on fashion-mnist:0-4")
    parser.add_argument("--what", default="", help="what changed, recorded with the figure")
    parser.add_argument("--out", type=Path, default=RESULTS / "fashion_time_split.json")
    args = parser.parse_args()
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    before = previous.get("after")
    if before and "metrics" not in before and "metrics" in previous:   # the older layout
        before = {**before, "metrics": previous["metrics"]}
    at_start = machine()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or pretrain(PretrainConfig(
            data="fashion-mnist:0-4", out=Path(tmp, "source"), epochs=5, verbose=2))
        source_accuracy = RunMetrics.load(source).test_accuracy
        after = measure(source, Path(tmp, "target"))
    after = {"what": args.what, **after, "machine": at_start,
             "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    result = {"command": COMMAND.format(source=source_accuracy),
              "note": "one run each on 2 shared cores (see each machine's load): compare "
                      "the split, not the seconds",
              "goal": "evaluation_share <= 0.333",
              "before": before, "earlier": previous.get("before"),
              "after": after}
    write_result(args.out, result)
    print(f"evaluation {after['seconds_by_phase']['evaluation']:.0f} s of "
          f"{after['seconds']:.0f} s ({after['evaluation_share']:.0%}); training "
          f"{after['seconds_by_phase']['training']:.0f} s; load {at_start['load_average_1min']}"
          f" -> {after['load_average_1min_at_end']}")


if __name__ == "__main__":
    main()
