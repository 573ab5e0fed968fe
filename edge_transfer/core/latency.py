"""Latency measured one way everywhere (validate, bench, bundle --for, the report): one image
at a time, ``WARMUP`` untimed runs, then ``RUNS`` timed runs cycling over the images given;
the median (p50), p90, p99 and the spread (interquartile range) of those runs, with the
runtime's thread count stated beside them.

>>> import numpy as np
>>> stats = measure_latency(lambda image: image.sum(), np.zeros((3, 4, 4), np.uint8),
...                         threads=1, runs=10, warmup=2)
>>> stats["runs"], stats["warmup"], stats["threads"], stats["p50"] >= 0
(10, 2, 1, True)
>>> describe_latency({"p50": 0.72, "iqr": 0.05, "runs": 100, "warmup": 5, "threads": 2})
'0.720 ms median (IQR 0.050) of 100 runs, 5 warm-up, 2 threads'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

WARMUP = 5
RUNS = 100


def measure_latency(
    run_one: Callable[[np.ndarray], Any], images: np.ndarray, threads: int | None,
    runs: int = RUNS, warmup: int = WARMUP,
) -> dict[str, Any]:
    """``run_one(image[None])`` timed ``runs`` times after ``warmup`` untimed calls, cycling
    over ``images``; milliseconds (``p50``, ``p90``, ``p99``, ``iqr``) and the procedure."""
    if len(images) == 0 or runs < 1:
        raise ValueError("latency needs at least one image and one run")
    for i in range(warmup):
        run_one(images[i % len(images)][None])
    times = np.empty(runs)
    for i in range(runs):
        image = images[i % len(images)][None]
        start = time.perf_counter()
        run_one(image)
        times[i] = (time.perf_counter() - start) * 1000
    q25, p50, q75, p90, p99 = np.percentile(times, [25, 50, 75, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "iqr": float(q75 - q25), "q25": float(q25), "q75": float(q75),
            "runs": int(runs), "warmup": int(warmup), "threads": threads, "batch": 1}


def describe_latency(latency: Mapping[str, Any] | None) -> str:
    """One line: the median, its spread and how it was measured (see the module's example)."""
    if not latency:
        return "not measured"
    threads = latency.get("threads")
    spread = latency.get("iqr")
    return (f"{latency['p50']:.3f} ms median"
            + (f" (IQR {spread:.3f})" if spread is not None else "")
            + (f" of {latency['runs']} runs" if latency.get("runs") else "")
            + (f", {latency['warmup']} warm-up" if latency.get("warmup") is not None else "")
            + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
