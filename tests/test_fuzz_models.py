"""Crash isolation: random bytes flipped in a valid .tflite and .onnx, each validated.

The damaged files are re-signed in the bundle's manifest (sha256 and size updated, as a
buggy exporter would have written them), so the runtime really loads them. `validate` on
the local device runs each model in a child process: this process must live through all
of them, and every case must end in a correct result, an accuracy check that fails, or a
clean one-line reason (a refused file, or a child that crashed or hung).
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtime_export import bundle_folder

from devices import validate_bundle

pytestmark = pytest.mark.slow  # dozens of validations of damaged models, each in its own process

CASES_PER_FORMAT = 20
SEED = 6


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    """1-8 bytes XOR-ed with random values; half the cases aim at the first and last 4 KiB
    (flatbuffer / protobuf structure rather than weights)."""
    damaged = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if rng.random() < 0.5:
            edge = min(4096, len(data))
            i = int(rng.integers(0, edge))
            i = i if rng.random() < 0.5 else len(data) - 1 - i
        else:
            i = int(rng.integers(0, len(data)))
        damaged[i] ^= int(rng.integers(1, 256))
    return bytes(damaged)


def _fuzz_bundle(source: Path, dest: Path) -> list[str]:
    bundle = Path(shutil.copytree(source, dest))
    manifest = json.loads((bundle / "manifest.json").read_text())
    originals = {a["name"]: a for a in manifest["artifacts"]}
    rng = np.random.default_rng(SEED)
    fuzzed = []
    for name in ("tflite-fp32", "onnx-fp32"):
        original = originals[name]
        data = (bundle / original["file"]).read_bytes()
        suffix = Path(original["file"]).suffix
        for i in range(CASES_PER_FORMAT):
            damaged = _flip(data, rng)
            file = f"fuzz-{name}-{i:02d}{suffix}"
            (bundle / file).write_bytes(damaged)
            fuzzed.append(f"{name}-fuzz{i:02d}")
            manifest["artifacts"].append({
                **original, "name": fuzzed[-1], "file": file, "bytes": len(damaged),
                "sha256": hashlib.sha256(damaged).hexdigest()})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return fuzzed


def _outcome(row: dict) -> str:
    if row["status"] == "ok":
        accuracy = next(c for c in row["checks"] if c["name"] == "accuracy")
        return "correct" if accuracy["status"] == "pass" else "ran, accuracy check failed"
    reason = row["reason"] or ""
    assert reason and "\n" not in reason and "Traceback" not in reason, reason
    if "crashed" in reason:
        return "child crashed, reported"
    if "did not finish" in reason:
        return "child hung, killed"
    return "refused with a reason"


def test_flipped_bytes_never_take_down_the_caller(digits_run: Path, tmp_path: Path) -> None:
    fuzzed = _fuzz_bundle(bundle_folder(digits_run), tmp_path / "bundle")
    result = validate_bundle(tmp_path / "bundle", device="local", artifacts=fuzzed,
                             timeout=60)
    rows = result["artifacts"]
    assert [r["name"] for r in rows] == fuzzed
    counts = collections.Counter(
        (r["name"].split("-")[0], _outcome(r)) for r in rows)
    print("\nfuzz outcomes:", json.dumps({f"{f}: {o}": n for (f, o), n in sorted(counts.items())},
                                         indent=1))
    assert sum(counts.values()) == 2 * CASES_PER_FORMAT
    # The damage must be real: not every case can come out unharmed.
    assert sum(n for (_, o), n in counts.items() if o != "correct") > 0
