"""TensorFlow set up for a training run, and this process's place in it: devices
(``--cpu-devices``), the seed, op determinism, the mixed-precision policy and the
``tf.distribute`` strategy (``--strategy``); under a multi-worker strategy, how many workers
there are and whether this one is the chief (the one that writes the run).

Not run as a doctest (it starts TensorFlow; tests/test_transfer.py trains under it):

>>> with training_context(cfg) as (tf, keras, strategy):              # doctest: +SKIP
...     is_chief(strategy)
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edge_transfer.core.errors import ConfigError
from edge_transfer.train.config import TrainingConfig


@contextmanager
def training_context(cfg: TrainingConfig) -> Iterator[tuple[Any, Any, Any]]:
    """TensorFlow with devices, seed, determinism, precision policy and strategy set up."""
    from edge_transfer.core.keras import load

    tf, keras = load()
    if cfg.cpu_devices:
        _split_cpu(tf, cfg.cpu_devices)
    strategy = _strategy(tf, cfg.strategy)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "mixed_float16" if gpus else "float32"
    if precision == "mixed_float16" and not gpus:
        raise ConfigError("--mixed-precision mixed_float16 needs a GPU (it is slower on a "
                          "CPU); use --mixed-precision float32 or auto")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield tf, keras, strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _split_cpu(tf: Any, count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:  # already initialised: fine when the split is already there
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ConfigError("--cpu-devices must be set before TensorFlow starts; run it in a "
                              "fresh process") from None


def _strategy(tf: Any, name: str) -> Any:
    if name == "multiworker":  # first: collectives must be configured before TF starts
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")  # mirrored: all GPUs, or CPUs
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def workers(model: Any) -> tuple[int, int] | None:
    """(workers, this worker's index) under a multi-worker strategy, else None."""
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None
    spec = resolver.cluster_spec().as_dict()
    tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(spec.get(kind, [])))]
    if len(tasks) < 2:
        return None
    return len(tasks), tasks.index((resolver.task_type, resolver.task_id))


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run: always, but under a multi-worker strategy only the
    chief (or worker 0 when there is no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task = resolver.task_type
    return task == "chief" or (task == "worker" and resolver.task_id == 0
                               and "chief" not in resolver.cluster_spec().as_dict())
