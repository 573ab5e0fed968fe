"""Convert export variants in worker processes, side by side, with results in the usual order.

TensorFlow is not safe in a forked process, so the workers are *spawned* (each a fresh
interpreter) and receive only paths and specs (:class:`Task`): the run's folder (its model
file, loaded by a worker that needs the Keras model; its test split, read a batch at a time
for the check), the calibration samples saved as ``.npy``, and a folder of intermediates one
worker makes for the others: the SavedModel every TFLite variant converts from and the float
ONNX graph every ONNX precision starts from. So the first variant of each format is converted
first, and the format's other variants once it is done.

Each worker converts, writes the file atomically (:mod:`edge_transfer.core.atomic`) and runs it
over the test split once (:meth:`~edge_transfer.export.variant.CheckData.predict_file`); the parent
compares those outputs with the Keras model as the sequential path does, so ``export.json``
is the same apart from its timings.

The workers start (spawn, TensorFlow and the converters imported, the test split opened)
when :class:`Workers` is entered, while the parent loads the model; they convert while the
parent computes the float model's outputs (:meth:`Workers.convert_in_background`).

A worker that dies (a converter's crash, the kernel's out-of-memory killer) breaks the pool;
the variants in flight then run again one at a time in a single fresh worker, so only the
variant that kills its worker again fails, with that reason. Ctrl-C / SIGTERM:
the workers ignore SIGINT (a terminal sends it to the whole process group) and write their
temporary files inside the export's work folder; the parent (:mod:`edge_transfer.core.interrupts`)
terminates them, waits for them, deletes what they were writing, and stops.

>>> choose_jobs(None, tasks=9, model_bytes=100_000)          # a small model: not worth it
1
>>> choose_jobs(3, tasks=2, model_bytes=100_000)             # never more workers than tasks
2
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.atomic import write_bytes_atomic
from edge_transfer.core.errors import one_line
from edge_transfer.runtime.metadata import ModelMetadata
from exporters import Artifact, ExportOptions, ExportSpec

# Below this model file size a variant converts in about the time a worker takes to start
# (spawn + importing TensorFlow, a few seconds): one after another in this process is faster.
SMALL_MODEL_BYTES = 2_000_000
# Peak memory of one converting worker: TensorFlow, converters and runtimes, plus the
# converter's copies of the graph and weights (measured on mobilenet_v2: about 1.4 GB
# at 14 MB of weights, int8 calibration included).
WORKER_BYTES = 1_200_000_000
WORKER_BYTES_PER_MODEL_BYTE = 40
# Formats whose variants share an intermediate made by the first of them (ONNX: the float
# graph in KerasSource.cache; TFLite: the SavedModel).
SHARED_FIRST = ("onnx", "tflite")
SAVED_MODEL = "saved_model"   # the shared SavedModel's folder in Task.cache_dir
FAILED = ".failed"            # a shared intermediate's suffix when it holds why it failed
# Seconds to convert and check a variant (mobilenet_v2 at 224 px, benchmarks/export.py): the
# order in which a format's variants start. Calibration makes int8 slow; ONNX Runtime runs
# a dynamic model's ConvInteger nodes slowly, so its check is the costly part.
COST = {("tflite", "int16x8"): 20, ("tflite", "int8"): 17, ("onnx", "dynamic"): 16,
        ("tflite", "dynamic"): 13, ("tflite", "fp16"): 12, ("onnx", "int8"): 6,
        ("onnx", "fp16"): 4}


@dataclass(frozen=True)
class Task:
    """One variant to convert in a worker: only paths, specs and small records."""

    index: int                     # its place in ExportConfig.variants()
    fmt: str
    spec: ExportSpec
    run: Path
    unsafe_load: bool
    cache_dir: Path                # intermediates shared between workers (SavedModel, ONNX)
    calibration: Path              # .npy of the calibration samples
    input_name: str
    calibration_method: str
    out_dir: Path
    metadata: ModelMetadata
    options: ExportOptions

    @property
    def name(self) -> str:
        return f"{self.fmt}-{self.spec.name}"


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: the artifact (``failed`` with its reason, or converted and
    written, its check still to judge) and the file's outputs on the test split."""

    artifact: Artifact
    outputs: np.ndarray | None = None


Worker = Callable[[Task], Outcome]


def choose_jobs(requested: int | None, tasks: int, model_bytes: int) -> int:
    """How many worker processes: ``requested`` (``--jobs``) capped at ``tasks``, else from
    the cores this process may use and the memory available (1: convert in this process)."""
    if requested is not None:
        return max(1, min(requested, tasks))
    if tasks < 2 or model_bytes < SMALL_MODEL_BYTES:
        return 1
    per_worker = WORKER_BYTES + WORKER_BYTES_PER_MODEL_BYTE * model_bytes
    by_memory = int(0.8 * available_memory() // per_worker)
    return max(1, min(usable_cores(), tasks, by_memory))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available without swapping (Linux ``MemAvailable``; else free pages;
    0 when unknown, which keeps the export in this process)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


# ------------------------------------------------------------------------------ parent side


class Workers:
    """``jobs`` spawned worker processes, started (TensorFlow and the converters imported,
    the run's test split opened) as soon as the context is entered, so that they warm up
    while this process loads the model. On any exception, an
    interrupt above all, the workers are terminated and waited for before it propagates, so
    nothing keeps writing once the parent's clean-up runs.

    ``worker`` is the function each runs per task (default :func:`run_task`; a test passes
    one that crashes)."""

    def __init__(self, jobs: int, workdir: Path, run: Path,
                 worker: Worker | None = None) -> None:
        self.jobs, self.workdir, self.run = jobs, Path(workdir), Path(run)
        self.worker = worker or run_task
        self._pool: ProcessPoolExecutor | None = None
        self._processes: dict[int, Any] = {}
        self._warm: list[Future[None]] = []
        self._background: ThreadPoolExecutor | None = None
        self._retry: Workers | None = None   # the one-worker pool re-running a dead one's tasks
        self._stopped = False

    def __enter__(self) -> Workers:
        self._pool = _new_pool(self.jobs, self.workdir, self.run)
        try:
            # one process each, started now
            self._warm = [self._pool.submit(_ready) for _ in range(self.jobs)]
            self._note_processes()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is not None:
            self.stop()
            return
        self.close()

    def close(self) -> None:
        """Let the workers finish and end (their memory is free again); idempotent."""
        if self._pool is None:
            return
        try:
            self._pool.shutdown(wait=True)
            if self._background is not None:
                self._background.shutdown(wait=True)
        except BaseException:
            self.stop()
            raise
        self._pool = None

    def start_failure(self) -> str | None:
        """None once every worker has started (waiting for them); else why they did not: a
        worker died starting up, before any variant (the usual cause: spawning re-runs the
        main script, which exported at import, without ``if __name__ == "__main__":``)."""
        for future in self._warm:
            try:
                future.result()
            except BrokenProcessPool:
                self._note_processes()
                return (f"the export's worker processes died while starting "
                        f"({_how_it_ended(self._processes)}); if a script of yours exports, "
                        'it must do it under `if __name__ == "__main__":` (each worker '
                        "imports the main script again, see Python's multiprocessing "
                        "guidelines); else a worker ran out of memory or could not import "
                        "TensorFlow: pass --jobs 1 / ExportConfig(jobs=1) to see it")
        return None

    @property
    def shared(self) -> Path:
        """The folder of what one worker makes for the others (:func:`share`)."""
        return self.workdir / "shared"

    def convert_in_background(self, tasks: list[Task], done: Callable[[Task, Outcome], None]
                              ) -> Future[dict[int, Outcome]]:
        """:meth:`convert_all` in a thread of this process, which is free meanwhile;
        :meth:`stop` ends it too."""
        self._background = ThreadPoolExecutor(1, thread_name_prefix="export-workers")
        return self._background.submit(self.convert_all, tasks, done)

    def convert_all(self, tasks: list[Task],
                    done: Callable[[Task, Outcome], None]) -> dict[int, Outcome]:
        """Every task's :class:`Outcome` by its index; ``done`` is called as each finishes.
        What a dead worker may have been running runs again alone (unless stopped)."""
        assert self._pool is not None, "use Workers in a with block"
        outcomes: dict[int, Outcome] = {}
        pending = self._run(tasks, outcomes, done)
        while pending and not self._stopped:   # one at a time: the task it dies on is culprit
            with Workers(1, self.workdir, self.run, self.worker) as alone:
                self._retry = alone
                while pending and not self._stopped:
                    task = pending.pop(0)
                    if alone._run([task], outcomes, done) and not self._stopped:
                        outcome = Outcome(Artifact(task.fmt, task.spec, status="failed").failed(
                            f"{task.name}: its worker process died while converting "
                            f"({_how_it_ended(alone._processes)}), e.g. a crash in the "
                            "converter or out of memory; the other variants are not affected; "
                            "run with --jobs 1 to see the error in the export's own process"))
                        outcomes[task.index] = outcome
                        done(task, outcome)
                        break   # that pool is broken: the rest in a fresh one
                if self._stopped:   # stopped while this pool started: no waiting for it
                    alone.stop()
        return outcomes

    def _run(self, tasks: list[Task], outcomes: dict[int, Outcome],
             done: Callable[[Task, Outcome], None]) -> list[Task]:
        """Run ``tasks`` in this pool; returns those a dead worker left without an outcome."""
        pool = self._pool
        assert pool is not None
        first, waiting = _leaders(tasks)
        running: dict[Future[Outcome], Task] = {}
        broken: list[Task] = []

        def submit(batch: list[Task]) -> None:
            for task in batch:
                try:
                    running[pool.submit(self.worker, task)] = task
                except (BrokenProcessPool, RuntimeError):   # RuntimeError: stopped meanwhile
                    broken.append(task)
            self._note_processes()

        submit(first)
        while running and not self._stopped:   # stopped: a killed worker's future may never end
            finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken.append(task)
                    continue
                except Exception as exc:   # the task or its result could not be pickled
                    outcome = Outcome(Artifact(task.fmt, task.spec, status="failed").failed(
                        f"{task.name}: its worker process failed: {one_line(exc, 200)}"))
                outcomes[task.index] = outcome
                done(task, outcome)
                follow = waiting.pop(task.fmt, [])
                if broken:
                    broken += follow
                else:
                    submit(follow)
        broken += [*running.values(), *(t for rest in waiting.values() for t in rest)]
        return sorted(broken, key=lambda t: t.index)

    def _note_processes(self) -> None:
        """Keep the worker processes (their exit codes outlive a broken pool)."""
        self._processes.update(getattr(self._pool, "_processes", None) or {})

    def stop(self) -> None:
        """Terminate the workers now and wait for them (what they were writing stays
        behind as temporaries for the caller to delete); idempotent."""
        self._stopped = True
        if self._retry is not None:
            self._retry.stop()
        if self._pool is None:
            return
        self._note_processes()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in self._processes.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self._processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        if self._background is not None:   # its loop ends once the workers are gone
            self._background.shutdown(wait=True)
        self._pool = None


def _leaders(tasks: list[Task]) -> tuple[list[Task], dict[str, list[Task]]]:
    """Tasks to start now (the first of each SHARED_FIRST format, then the others), and per
    format the ones that start when its first is done, the costliest first (so that no long
    one is left to run alone at the end)."""
    first: list[Task] = []
    waiting: dict[str, list[Task]] = {}
    seen: set[str] = set()
    for task in tasks:
        if task.fmt in SHARED_FIRST and task.fmt in seen:
            waiting.setdefault(task.fmt, []).append(task)
        else:
            seen.add(task.fmt)
            first.append(task)
    first.sort(key=lambda t: t.fmt not in SHARED_FIRST)   # stable: leaders first
    for followers in waiting.values():
        followers.sort(key=lambda t: -COST.get((t.fmt, t.spec.precision), 0))
    return first, waiting


def _how_it_ended(processes: dict[int, Any], wait: float = 5.0) -> str:
    """How a broken pool's processes ended, e.g. "killed by SIGKILL". The pool's own thread
    reaps them after it fails the futures; until it has stored an exit code, asking for one
    finds none (the child is already reaped), so wait for the codes a little."""
    deadline = time.monotonic() + wait
    while (any(p.exitcode is None for p in processes.values())
           and time.monotonic() < deadline):
        time.sleep(0.05)
    codes = [p.exitcode for p in processes.values() if p.exitcode not in (None, 0)]
    if not codes:
        return "exit status unknown"
    code = codes[0]
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def importing_main() -> bool:
    """Whether this process is a spawned worker still importing the parent's main script:
    an export started there (a script without a ``__main__`` guard) would start workers of
    its own, which multiprocessing refuses."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _new_pool(jobs: int, workdir: Path, run: Path) -> ProcessPoolExecutor:
    threads = max(1, usable_cores() // jobs)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker,
                               initargs=(str(workdir), str(run), threads))


# ------------------------------------------------------------------------------ worker side


def _init_worker(workdir: str, run: str, threads: int) -> None:
    """In each worker, once: SIGINT ignored (the parent decides; a terminal's Ctrl-C reaches
    the whole process group), an exit when the parent dies, temporary files inside the
    export's work folder, its share of the cores (``threads`` for TensorFlow and the checks'
    runtimes: workers that each take every core slow each other down, e.g. 5% at 224 px on
    2 cores), then the imports and the test split every task needs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    tempfile.tempdir = workdir
    os.environ["TMPDIR"] = workdir
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)   # read when TensorFlow starts
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    _STATE["threads"] = threads
    from edge_transfer.core.keras import load

    load()
    import onnxruntime  # noqa: F401
    import tf2onnx  # noqa: F401

    _check_data(Path(run))


def _exit_with_parent() -> None:
    """End this worker as soon as the export's process is gone. A parent that could not stop
    its workers (SIGKILL, the out-of-memory killer, a script killed by SIGTERM without a
    handler) would otherwise leave them waiting for tasks forever: each holds its own task
    queue's write end, so it never reads an end of file."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()          # returns when the parent's sentinel pipe closes: it died
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _ready() -> None:
    """A first task that only makes the pool start a worker process (it is warm once its
    initializer returned)."""


_STATE: dict[Any, Any] = {}   # per worker process: what its tasks share


def run_task(task: Task) -> Outcome:
    """Convert one variant in this worker and run the file over the test split once."""
    from edge_transfer.export.variant import convert_variant
    from exporters.failures import conversion_failure

    pending = Artifact(task.fmt, task.spec, status="failed")  # until it is made
    start = time.perf_counter()
    try:
        source = _source(task)
        artifact, outputs = convert_variant(
            task.fmt, task.spec, source, _calibration(task), task.out_dir, task.metadata,
            task.options, _check_data(task.run))
    except Exception as exc:
        reason = str(conversion_failure(pending.name, exc))
        seconds = round(time.perf_counter() - start, 3)
        return Outcome(dataclasses.replace(pending.failed(reason), seconds=seconds))
    finally:
        if "source" in locals():
            with contextlib.suppress(Exception):   # e.g. a full disk: the others make their
                share(source, task.cache_dir)           # own, as they would without it
    return Outcome(artifact, outputs)


def _source(task: Task) -> Any:
    """The float model as a KerasSource: the shared SavedModel and intermediates, and the
    Keras model loaded only when a converter needs it (the first variant of a format)."""
    from exporters import KerasSource
    from exporters.onnx_graph import float_key

    key = ("source", task.run)
    source = _STATE.get(key)
    cache = source.cache if source is not None else {}
    _read_shared(cache, task.cache_dir)
    in_graph = task.metadata.preprocessing   # converted behind the pixel adapter
    needs_model = (not (task.cache_dir / SAVED_MODEL).is_dir() if task.fmt == "tflite"
                   else float_key(task.options.opset, "-pixels") not in cache)
    if source is None or (needs_model and source.model is None):
        model = _keras_model(task) if needs_model else None
        source = KerasSource(model, Path(tempfile.mkdtemp(prefix="worker-")), cache,
                             in_graph=in_graph)
        _STATE[key] = source
    _use_shared_saved_model(source, task.cache_dir)
    return source


def adopt_shared(source: Any, folder: Path) -> None:
    """Give ``source`` (a KerasSource) what the workers shared in ``folder``: intermediates
    it lacks, and the SavedModel."""
    _read_shared(source.cache, folder)
    _use_shared_saved_model(source, folder)


def _use_shared_saved_model(source: Any, folder: Path) -> None:
    if (folder / SAVED_MODEL).is_dir():
        source.__dict__["saved_model"] = folder / SAVED_MODEL


def _read_shared(cache: dict[str, Any], folder: Path) -> None:
    for path in sorted(folder.glob("[!.]*")):
        name = path.name.removesuffix(FAILED)
        if name not in cache and path.is_file():   # read each shared file once
            cache[name] = (path.read_text(encoding="utf-8") if path.name.endswith(FAILED)
                           else path.read_bytes())


def _keras_model(task: Task) -> Any:
    from edge_transfer.train.runs import Run

    return Run.open(task.run).load_model(unsafe_load=task.unsafe_load)


def share(source: Any, folder: Path) -> None:
    """Give the other workers what this one made: the intermediates (bytes, or a str: why
    one could not be made) and the SavedModel (moved into ``folder``, used from there)."""
    for key, value in source.cache.items():
        if isinstance(value, str):   # why it could not be made
            key, value = key + FAILED, value.encode()
        if isinstance(value, bytes) and not (folder / key).exists():
            write_bytes_atomic(folder / key, value)
    written = source.__dict__.get("saved_model")
    shared = folder / SAVED_MODEL
    if written is not None and written != shared and not shared.exists():
        os.rename(written, shared)   # one file system: the export's work folder
        source.__dict__["saved_model"] = shared


def _calibration(task: Task) -> Any:
    from exporters import Calibration

    key = ("calibration", task.calibration)
    if key not in _STATE:
        x = np.load(task.calibration, allow_pickle=False)
        _STATE[key] = Calibration(x, task.input_name, method=task.calibration_method)
    return _STATE[key]


def _check_data(run: Path) -> Any:
    from edge_transfer.export.variant import CheckData
    from edge_transfer.train.runs import Run

    key = ("check", run)
    if key not in _STATE:
        opened = Run.open(run)
        _STATE[key] = CheckData(opened.splits.test, opened.preprocessing,
                                threads=_STATE.get("threads"))
    return _STATE[key]
