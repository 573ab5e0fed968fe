"""One variant: convert and write it, then run the file over the check split once
(:class:`CheckData`, read a batch at a time), in this process or an export worker's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import exporters
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset, stratified_sample
from edge_transfer.runtime.metadata import ModelMetadata
from edge_transfer.train.runs import Run
from exporters import Artifact, Calibration, ExportOptions, ExportSpec, KerasSource


@dataclass(frozen=True, eq=False)
class CheckData:
    """The split the export checks run on, read a batch at a time (one pass per model)."""

    split: Dataset
    preprocessing: Preprocessing
    batch_size: int = 128  # a runtime arena (and RSS) grows with the batch: keep it small
    threads: int | None = None   # the runtimes' threads (None: their default, every core)

    def __len__(self) -> int:
        return len(self.split)

    @property
    def y(self) -> np.ndarray:
        """The split's integer labels, in the order :meth:`predict` returns outputs."""
        return self.split.y

    @classmethod
    def sample(cls, run: Run, name: str, count: int, seed: int = 0) -> CheckData:
        """At most ``count`` images of a split (a fixed stratified sample, seeded)."""
        return cls(stratified_sample(run.splits.get(name), count, seed), run.preprocessing)

    def predict(self, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``function`` (float input batch -> outputs) over the whole split, concatenated."""
        outputs = [function(self.preprocessing.apply(batch))
                   for batch in self.split.x.batches(self.batch_size)]
        return np.concatenate(outputs)

    def predict_file(self, path: Path | bytes, fmt: str) -> np.ndarray:
        """A model file's (or its bytes') float outputs over the whole split in one pass: its
        runtime opened once (as on the device,
        :func:`~edge_transfer.runtime.backends.run_float`), fed a batch at a time, the
        images preprocessed as its own metadata says (as on the device; the run's
        preprocessing for a graph without it)."""
        from edge_transfer.runtime.backends import open_backend, run_float
        from edge_transfer.runtime.metadata import embedded_metadata

        model = path if isinstance(path, bytes) else Path(path)
        backend = open_backend(model, self.threads, format=fmt)
        meta = embedded_metadata(backend, model)
        data = self if meta is None else dataclasses.replace(self, preprocessing=meta.preprocessing)
        return data.predict(lambda x: run_float(backend, x))


def convert_variant(fmt: str, spec: ExportSpec, source: KerasSource,
                    calibration: Calibration, out: Path, meta: ModelMetadata,
                    options: ExportOptions, check_data: CheckData
                    ) -> tuple[Artifact, np.ndarray]:
    """Convert and write one variant, then run the file over the check split once: the
    artifact (with its convert and check seconds) and its outputs, still to be judged.
    Raises what the converter or runtime raised."""
    module = exporters.get(fmt)
    start = time.perf_counter()
    artifact = module.export(source, spec, calibration, out, metadata=meta, options=options)
    converted = time.perf_counter()
    assert artifact.path is not None
    outputs = check_data.predict_file(artifact.path, fmt)
    return dataclasses.replace(artifact, seconds=round(converted - start, 3),
                               check_seconds=round(time.perf_counter() - converted, 3)), outputs
