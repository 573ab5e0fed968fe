"""The backbone support matrix: measure one backbone through the whole chain, read the results.

:func:`probe` trains a registry backbone from random weights on digits 0-4 at a given input
size, then exports fp32 and int8 to TFLite and ONNX (and QAT int8 when asked), each variant
checked in its runtime. ``benchmarks/backbones.py`` runs it for every family and writes
``edge_transfer/report/backbones.json`` (package data); ``edge-transfer backbones`` and the
README's backbone table are read from that file (:func:`load_matrix`, :func:`markdown_table`),
never typed by hand.

>>> row = {"name": "vgg16", "family": "VGG", "input_size": 32,
...        "train": {"status": "ok", "val_accuracy": 0.96, "above_chance": True},
...        "variants": {"tflite-fp32": {"status": "ok", "accuracy": 0.96, "seconds": 3.0}}}
>>> cells(row)["tflite fp32"], cells(row)["onnx int8"]
('ok 0.96 (3 s)', '-')

A float model at chance is said so in every cell: its files "pass" only by matching it.

>>> row["train"] |= {"val_accuracy": 0.2, "above_chance": False}
>>> cells(row)["trains"], cells(row)["tflite fp32"]
('NO (chance) 0.20', 'at chance 0.96 (matches float; 3 s)')
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_transfer.core import interrupts

RESULTS_FILE = Path(__file__).with_name("backbones.json")   # package data: installs with it
SOURCE_DATA = "digits:0-4"
COLUMNS = {"tflite fp32": "tflite-fp32", "tflite int8": "tflite-int8", "onnx fp32": "onnx-fp32",
           "onnx int8": "onnx-int8", "tflite qat": "tflite-int8-qat", "onnx qat": "onnx-int8-qat"}


def base_row(name: str, epochs: int, qat: bool, input_size: int | None = None
             ) -> dict[str, Any]:
    """The fields of a matrix row known before anything runs (from the registry), so that a
    row that fails, even as a crashed process, still shows its family and input size.

    >>> base_row("vgg16", 4, True)["input_size"]
    32
    """
    from edge_transfer.train import backbones

    spec = backbones.get(name)
    return {"name": spec.name, "family": spec.family, "input_size": input_size or spec.min_size,
            "epochs": epochs, "qat_measured": qat}


def relative_paths(text: str, root: str | Path | None = None) -> str:
    """``text`` with ``root`` (a run's work folder) and any other temporary folder cut from
    the paths it names (``$TMPDIR``'s and ``/tmp``'s), so a reason reads
    ``convnext_tiny/model.keras``, not a temporary path that no longer exists.

    >>> relative_paths("cannot load /tmp/bench-x-ab12/convnext_tiny/model.keras: bad",
    ...                "/tmp/bench-x-ab12")
    'cannot load convnext_tiny/model.keras: bad'
    >>> relative_paths("cannot load /tmp/tmpq3k_/row/model.keras")
    'cannot load row/model.keras'
    """
    if root is not None:
        text = text.replace(f"{str(root).rstrip('/')}/", "")
    longest_first = sorted({tempfile.gettempdir().rstrip("/"), "/tmp"}, key=len, reverse=True)
    temps = "|".join(re.escape(t) for t in longest_first)
    return re.sub(rf"(?:{temps})/[^/\s]+/", "", text)


def tidy_reason(text: str) -> str:
    """A failure reason for the matrix: paths relative to the run, class and exception names
    without their modules.

    >>> tidy_reason("process exited 1: edge_transfer.core.errors.ModelError: cannot load /tmp/t1/m")
    'process exited 1: ModelError: cannot load m'
    >>> tidy_reason("Layer bn:<class 'tf_keras.src.layers.BatchNormalization'> is not supported")
    'Layer bn: BatchNormalization is not supported'
    """
    text = re.sub(r":?<class '(?:\w+\.)*(\w+)'>", r": \1", relative_paths(text))
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Z]\w*(?:Error|Exception|Exit))\b", r"\1", text)



def probe(name: str, workdir: Path, input_size: int | None = None, epochs: int = 4,
          qat: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train ``name`` from random weights on digits 0-4, export and check every variant.

    Returns one row of the support matrix: ``train`` (status, val accuracy, above chance,
    seconds) and ``variants`` (per artifact: status, accuracy, seconds, reason).
    """
    row = base_row(name, epochs, qat, input_size)
    run = Path(workdir) / name
    row |= _pretrained(run, workdir, row["input_size"], epochs, seed)
    if row["train"]["status"] != "ok":
        return row | {"variants": {}}
    return row | _exported(run, workdir, qat, seed)


def _pretrained(run: Path, workdir: Path, size: int, epochs: int, seed: int
                ) -> dict[str, Any]:
    """A row's ``train`` (and ``params``): the backbone ``run.name`` pretrained from random
    weights into ``run``, or why it failed."""
    from edge_transfer.core.errors import EdgeTransferError, ModelError
    from edge_transfer.core.records.run import RunInfo, RunMetrics
    from edge_transfer.core.stats import at_chance, wilson
    from edge_transfer.train.transfer import PretrainConfig, pretrain

    start = time.perf_counter()
    try:
        pretrain(PretrainConfig(data=SOURCE_DATA, out=run, backbone=run.name, weights="none",
                                input_size=size, epochs=epochs, patience=epochs, seed=seed,
                                verbose=0))
    except (EdgeTransferError, ValueError, RuntimeError) as exc:
        return {"train": _failed(exc, workdir, start)}
    metrics = RunMetrics.load(run)
    val, train = metrics.val_accuracy, metrics.train_accuracy
    if val is None or train is None:
        raise ModelError(f"{run}/{RunMetrics.FILE_NAME} has no train/val accuracy; the "
                         "pretrain did not finish: run it again")
    # The chance test on the images val_accuracy was measured on (older runs: the val split).
    info = RunInfo.load(run)
    sizes = info.data.sizes
    val_size = metrics.val_samples or (sizes.val if sizes else 0)
    val_at_chance = bool(val_size) and at_chance(wilson(round(val * val_size), val_size), 5)
    params = _params(run)
    return {"params": params, "train": {
        "status": "ok", "val_accuracy": round(val, 4), "train_accuracy": round(train, 4),
        "chance": 0.2, "above_chance": not val_at_chance,
        "warnings": [relative_paths(w, workdir) for w in info.warnings],
        "seconds": _since(start)}}


def _exported(run: Path, workdir: Path, qat: bool, seed: int) -> dict[str, Any]:
    """A row's export figures and ``variants``: fp32 and int8 (and QAT) of ``run``, each
    checked in its runtime, or why the export failed."""
    from edge_transfer.core.errors import EdgeTransferError
    from edge_transfer.export.config import ExportConfig
    from edge_transfer.export.pipeline import export_run

    start = time.perf_counter()
    try:
        result = export_run(run, ExportConfig(precisions=("fp32", "int8"), qat=qat,
                                              calibration_samples=64, qat_epochs=1, seed=seed))
    except EdgeTransferError as exc:   # e.g. the saved model cannot be loaded back
        return {"export": _failed(exc, workdir, start), "variants": {}}
    return {"export_seconds": _since(start), "float_accuracy": round(result.float_accuracy, 4),
            "float_health": result.float_health,   # the float model at chance on the test split
            "variants": {a.name: {"status": a.status, "accuracy": _round(a.accuracy),
                                  "seconds": a.seconds, "bytes": a.bytes,
                                  "reason": None if a.reason is None
                                  else relative_paths(a.reason, workdir)}
                         for a in result.artifacts}}


def _since(start: float) -> float:
    """Seconds since ``start`` (``time.perf_counter()``), to a tenth."""
    return round(time.perf_counter() - start, 1)


def _failed(exc: BaseException, workdir: Path, start: float) -> dict[str, Any]:
    """A step of a row that raised ``exc``: its status, its reason's first line, its time."""
    return {"status": "failed", "reason": _line(exc, workdir), "seconds": _since(start)}


FILE_COLUMN = "from a .keras file"
FILE_ACCURACY = 0.8    # test accuracy a family trained from its own .keras file must reach


def save_application(name: str, path: Path, input_size: int | None = None,
                     seed: int = 0) -> Path:
    """The keras.applications model of registry backbone ``name``, as a user saves one:
    random weights (drawn from ``seed``, so a cell or a test can be measured again; this
    seeds Python's, NumPy's and TensorFlow's global generators, as a training run does),
    ``include_top=False``, average pooling, every other argument left at its default (so
    ``include_preprocessing`` models keep their scaling layers), at ``input_size`` (default:
    the smallest it accepts)."""
    from edge_transfer.core.keras import load
    from edge_transfer.train import backbones

    _, keras = load()
    spec = backbones.get(name)
    size = input_size or spec.min_size
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, spec.application)(
        input_shape=(size, size, 3), include_top=False, weights=None, pooling="avg")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def probe_file(name: str, workdir: Path, epochs: int = 4, seed: int = 0) -> dict[str, Any]:
    """Pretrain registry backbone ``name`` from its own ``.keras`` file (:func:`save_application`)
    on digits 0-4 as a user would (``--backbone FILE``): the matrix's :data:`FILE_COLUMN`
    cell: status, test accuracy, the ``input:`` decision and the run's warnings."""
    from edge_transfer.core.errors import EdgeTransferError
    from edge_transfer.core.records.run import RunInfo, RunMetrics
    from edge_transfer.train.messages import health_line
    from edge_transfer.train.transfer import PretrainConfig, pretrain

    start = time.perf_counter()
    file = save_application(name, Path(workdir) / f"{name}.keras", seed=seed)
    run = Path(workdir) / f"{name}-file"
    try:
        pretrain(PretrainConfig(data=SOURCE_DATA, out=run, backbone=str(file), epochs=epochs,
                                patience=epochs, seed=seed, verbose=0))
    except (EdgeTransferError, ValueError, RuntimeError) as exc:
        return _failed(exc, workdir, start)
    metrics = RunMetrics.load(run)
    record = json.loads((run / "preprocessing.json").read_text()).get("input") or {}
    warnings = [*RunInfo.load(run).warnings, *filter(None, [health_line(run)])]
    return {"status": "ok", "test_accuracy": _round(metrics.test_accuracy),
            "test_samples": metrics.test_samples, "input": record.get("line"),
            "warnings": [relative_paths(w, workdir) for w in warnings],
            "seconds": _since(start)}


def file_cell(row: dict[str, Any]) -> str:
    """The :data:`FILE_COLUMN` cell: ``ok 0.97``, ``0.62: <the warning that says why>``,
    ``0.62, no warning`` (a gap to fix), a failure, or ``not measured yet``.

    >>> file_cell({"from_file": {"status": "ok", "test_accuracy": 0.97, "warnings": []}})
    'ok 0.97'
    >>> file_cell({"name": "vgg16"})
    'not measured yet'
    """
    cell = row.get("from_file")
    if not cell:
        return "not measured yet"
    if cell.get("status") != "ok":
        return f"failed: {tidy_reason(cell.get('reason') or 'unknown')}"
    accuracy = cell.get("test_accuracy") or 0.0
    if accuracy > FILE_ACCURACY:
        return f"ok {accuracy:.2f}"
    warnings = cell.get("warnings") or []
    return f"{accuracy:.2f}: {warnings[0]}" if warnings else f"{accuracy:.2f}, no warning"


def _params(run: Path) -> int | None:
    from edge_transfer.train.models import load_keras_model

    try:
        return int(load_keras_model(run / "extractor.keras").count_params())
    except Exception as exc:
        interrupts.check(exc)
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _line(exc: BaseException, workdir: Path | None = None) -> str:
    text = str(exc).strip().splitlines()
    return relative_paths(text[0] if text else type(exc).__name__, workdir)[:300]


def float_at_chance(row: dict[str, Any]) -> bool:
    """Whether the row's float model is at chance: on the export's test split
    (``float_health``), or on validation after training (rows measured before that field)."""
    if row.get("float_health"):
        return True
    train = row.get("train", {})
    return train.get("status") == "ok" and train.get("above_chance") is False


def load_matrix(path: Path | None = None) -> dict[str, Any]:
    """The benchmark's results (``{"models": [...]}``); empty when it was never run."""
    path = Path(path) if path else RESULTS_FILE
    if not path.is_file():
        return {"models": [], "missing": str(path)}
    return json.loads(path.read_text())


def cells(row: dict[str, Any]) -> dict[str, str]:
    """One matrix row as short text cells: trains, then each variant column."""
    train = row.get("train", {})
    chance = float_at_chance(row)
    if train.get("status") == "ok":
        mark = "NO (chance)" if chance else "yes"
        trains = f"{mark} {train['val_accuracy']:.2f}"
        if row.get("export", {}).get("status") == "failed":
            trains += f"; export failed: {row['export'].get('reason')}"
    else:
        trains = f"failed: {train.get('reason', 'not run')}" if train else "-"
    out = {"trains": tidy_reason(trains)}
    variants = row.get("variants", {})
    for column, key in COLUMNS.items():
        v = variants.get(key)
        if v is None:
            out[column] = "not run" if "qat" in key and row.get("qat_measured") is False else "-"
        elif v["status"] == "ok":
            seconds = f"{v['seconds']:.0f} s" if v.get("seconds") is not None else ""
            if chance:   # it passed by matching a float model that learned nothing
                out[column] = f"at chance {v['accuracy']:.2f} (matches float" + (
                    f"; {seconds})" if seconds else ")")
            else:
                out[column] = f"ok {v['accuracy']:.2f}" + (f" ({seconds})" if seconds else "")
        elif (str(v.get("reason")).startswith("accuracy") and v.get("accuracy") is not None
              and row.get("float_accuracy") is not None):
            out[column] = (f"failed: accuracy {v['accuracy']:.2f} vs float "
                           f"{row['float_accuracy']:.2f} (more than the allowed drop)")
        else:
            out[column] = f"failed: {tidy_reason(v.get('reason') or 'unknown')}"
    return out


def markdown_table(matrix: dict[str, Any], reason_limit: int = 90) -> str:
    """The support matrix as a Markdown table (the README's backbone section)."""
    header = ["backbone", "family", "input", "params", "trains (val acc)", *COLUMNS,
              FILE_COLUMN]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matrix.get("models", []):
        text = cells(row)
        row = {**_registry_fields(row["name"]), **{k: v for k, v in row.items() if v is not None}}
        values = [f"`{row['name']}`", row.get("family", ""), f"{row.get('input_size', '')} px",
                  _millions(row.get("params")),
                  *(_short(text[c], reason_limit) for c in ("trains", *COLUMNS)),
                  _short(file_cell(row), reason_limit)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def _registry_fields(name: str) -> dict[str, Any]:
    """A row's family and input size from the registry (rows of a crashed process lack them)."""
    from edge_transfer.core.errors import ModelError
    from edge_transfer.train import backbones

    try:
        spec = backbones.get(name)
    except ModelError:   # a name the registry no longer has
        return {}
    return {"family": spec.family, "input_size": spec.min_size}


def _millions(params: int | None) -> str:
    return "-" if not params else f"{params / 1e6:.1f} M"


def _short(text: str, limit: int) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"
