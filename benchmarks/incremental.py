"""Class-incremental transfer (issue 24) against its two bounds, the split-MNIST protocol.

Fashion-MNIST in 5 steps of 2 classes (0-1, +2-3, +4-5, +6-7, +8-9) and digits in 2 steps
(0-4, +5-9); per seed, step A is ``finetune`` (small-cnn from random weights, so the
extractor has seen only step A's classes), then ``extend`` step by step for each chain
``HEAD:MEMORY`` (``--head lda|softmax``, ``--memory`` feature vectors kept per class); at
every step of every chain the two baselines on the same test images, each a fresh softmax
head: plain fine-tuning (trained on the new classes alone) and joint training (on every
class's training images). All figures on the official test images (Fashion) or the run's
test split (digits) of the classes seen so far.

    nice -n 10 python benchmarks/incremental.py [--tasks fashion,digits] [--seeds 0,1,2]
        [--chains lda:0,softmax:0,softmax:5,softmax:20,softmax:50] [--shots 300]

Writes benchmarks/results/incremental.json (commit, load, every step of every chain).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, machine, write_result

from edge_transfer.core.records import IncrementalHistory, RunMetrics
from edge_transfer.train.incremental import ExtendConfig, cache_features, extend
from edge_transfer.train.transfer import FinetuneConfig, finetune

TASKS: dict[str, dict[str, Any]] = {
    "fashion": {"steps": ["fashion-mnist:0-1", "fashion-mnist:2-3", "fashion-mnist:4-5",
                          "fashion-mnist:6-7", "fashion-mnist:8-9"],
                "first": {"width": 0.5, "epochs": 5, "finetune_epochs": 10}},
    "digits": {"steps": ["digits:0-4", "digits:5-9"],
               "first": {"epochs": 15, "finetune_epochs": 5}},
}
# van de Ven & Tolias 2019, split MNIST, class-incremental (a different dataset: MNIST).
# As summarised in DESIGN.md and issue 24 (ranges, not one table's digits).
PUBLISHED = {"fine-tuning, EWC, SI, LwF": "about 0.20",
             "replay: iCaRL, generative replay": "0.90-0.95",
             "joint training": "about 0.98"}


def chain(task: str, first: Path, memory: int, shots: int | None, seed: int,
          baselines: bool, work: Path, head: str = "auto") -> list[dict[str, Any]]:
    """Extend ``first`` step by step with ``memory`` vectors per class and ``head``; every
    step's figures."""
    steps, run = TASKS[task]["steps"], first
    for k, spec in enumerate(steps[1:], start=1):
        out = work / f"{task}-s{seed}-m{memory}-{head}-{k}"
        run = extend(ExtendConfig(run=run, data=spec, out=out, memory=memory, shots=shots,
                                  head=head,
                                  baseline=("finetune", "joint") if baselines else (),
                                  verbose=0))
    history = IncrementalHistory.load(run)
    return [s.to_dict() for s in history.steps]


def first_step(task: str, seed: int, shots: int | None, memory: int, work: Path) -> Path:
    spec = TASKS[task]["steps"][0]
    return finetune(FinetuneConfig(data=spec, out=work / f"{task}-s{seed}-a", seed=seed,
                                   shots=shots, memory=memory, verbose=0,
                                   **TASKS[task]["first"]))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of the final step: per memory size, and the baselines."""
    out: dict[str, Any] = {}
    finals: dict[str, list[float]] = {}
    for r in runs:
        last, key = r["steps"][-1], f"{r.get('head', 'softmax')} memory {r['memory']}"
        finals.setdefault(key, []).append(last["all_accuracy"])
        finals.setdefault(f"{key} old", []).append(last["old_accuracy"])
        finals.setdefault(f"{key} old - before", []).append(last["old_accuracy"]
                                                            - last["old_before"])
        for name, base in last.get("baselines", {}).items():
            finals.setdefault(f"baseline {name}", []).append(base["all_accuracy"])
            finals.setdefault(f"{key} - {name}", []).append(base["method_vs"]["difference"])
            finals.setdefault(f"{key} vs {name} p", []).append(base["method_vs"]["p_value"])
    for key, values in finals.items():
        out[key] = {"mean": statistics.fmean(values), "values": values,
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fashion,digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--chains", default="lda:0,softmax:0,softmax:5,softmax:20,softmax:50",
                        help="HEAD:MEMORY per chain (extend --head, --memory), paired per seed")
    parser.add_argument("--shots", type=int, default=300,
                        help="training images per Fashion class (digits: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "incremental.json")
    args = parser.parse_args()
    load, started = machine(), time.time()
    chains = [(h, int(m)) for h, m in (c.split(":") for c in args.chains.split(","))]
    result: dict[str, Any] = {"machine": load, "published_split_mnist": PUBLISHED,
                              "command": "python benchmarks/incremental.py --tasks "
                              f"{args.tasks} --seeds {args.seeds} --chains {args.chains} "
                              f"--shots {args.shots}", "tasks": {}}
    if args.out.is_file():    # tasks run at another time stay, with their own command
        import json

        kept = json.loads(args.out.read_text()).get("tasks", {})
        result["tasks"] = {k: v for k, v in kept.items() if k not in args.tasks.split(",")}
    # the chains of one seed share its frozen extractor: features computed once per seed
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            shots = args.shots if task == "fashion" else None
            runs = []
            for seed in (int(s) for s in args.seeds.split(",")):
                cache_features()
                first = first_step(task, seed, shots, max(m for _, m in chains), Path(tmp))
                print(f"{task} seed {seed}: step A test accuracy "
                      f"{RunMetrics.load(first).test_accuracy:.3f}", flush=True)
                for head, memory in chains:
                    steps = chain(task, first, memory, shots, seed, True, Path(tmp), head)
                    runs.append({"seed": seed, "memory": memory, "head": head, "steps": steps})
                    print(f"  {head} memory {memory}: all-class accuracy per step "
                          f"{[round(s['all_accuracy'], 3) for s in steps]}, old - before "
                          f"{steps[-1]['old_accuracy'] - steps[-1]['old_before']:+.3f}",
                          flush=True)
                    result["tasks"][task] = {"runs": runs, "summary": summary(runs),
                                             "command": result["command"], "machine": load}
                    write_result(args.out, {**result, "seconds": round(time.time() - started)})
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
