"""A worker function for the parallel export's tests: it kills its own process on one
variant (as a converter's segfault or the out-of-memory killer would), and converts the
others as the real worker does. Spawned workers import it by this module's name."""

from __future__ import annotations

import os
import signal

from edge_transfer.export.workers import Outcome, Task, run_task

CRASHES_ON = "tflite-int8"


def crash_on_tflite_int8(task: Task) -> Outcome:
    if task.name == CRASHES_ON:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_task(task)
