"""Class-incremental transfer (issue 24): memory, the grown head, ``extend`` end to end, and
every later step (export, report, check) on an extended run. Tiny digits runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, run_main

from edge_transfer.core.errors import DataError, ModelError
from edge_transfer.data.dataset import split_dataset
from edge_transfer.data.load import load_dataset
from edge_transfer.train.class_stats import ClassStatistics
from edge_transfer.train.linear_head import HeadTraining, LinearHead, align_weights, train_head
from edge_transfer.train.memory import FeatureMemory, build_memory, herding


def test_herding_picks_items_whose_mean_is_near_the_class_mean() -> None:
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(300, 16))) ** 3        # skewed: random picks miss the mean
    normed = x / np.linalg.norm(x, axis=1, keepdims=True)
    target = normed.mean(axis=0)
    herded = np.linalg.norm(normed[herding(x, 10)].mean(axis=0) - target)
    random = np.mean([np.linalg.norm(normed[rng.choice(300, 10, replace=False)].mean(axis=0)
                                     - target) for _ in range(50)])
    assert herded < random / 2
    assert len(set(herding(x, 10).tolist())) == 10


def test_memory_round_trips_in_float16_and_truncates_by_priority(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.repeat([0, 1], 20)
    memory = build_memory(x, y, ("a", "b"), per_class=8, extractor="d1")
    memory.save(tmp_path)
    back = FeatureMemory.load(tmp_path)
    assert back.class_names == ("a", "b") and back.per_class == 8 and back.extractor == "d1"
    np.testing.assert_allclose(back.features, memory.features, atol=1e-2)
    assert back.nbytes == 16 * 6 * 2
    first3 = back.truncated(3)
    assert np.array_equal(first3.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(first3.features[:3], back.features[:3])
    with pytest.raises(ModelError, match="--memory 0"):
        FeatureMemory.load(tmp_path / "nowhere")


def test_frozen_classes_keep_their_weights_and_balance_weighs_classes_equally() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 1, (200, 4)), rng.normal(1, 1, (10, 4)),
                        rng.normal(3, 1, (200, 4))])
    y = np.repeat([0, 1, 2], [200, 10, 200])
    start = LinearHead.initial(4, 3, seed=1)
    frozen = train_head(start, x, y, HeadTraining(epochs=3, frozen=2))
    np.testing.assert_array_equal(frozen.kernel[:, :2], start.kernel[:, :2])
    assert not np.allclose(frozen.kernel[:, 2], start.kernel[:, 2])
    unseen = rng.normal(1, 1, (500, 4))                # the rare class, new images
    plain, balanced = (train_head(start, x, y, HeadTraining(epochs=50, learning_rate=1e-2,
                                                            balanced=b)) for b in (False, True))
    recall = [np.mean(h.predict(unseen) == 1) for h in (plain, balanced)]
    assert recall[0] < 0.1 and recall[1] > 0.6
    aligned = align_weights(LinearHead(np.array([[3.0, 0.5], [4.0, 0.0]]), np.zeros(2)), 1)
    np.testing.assert_allclose(np.linalg.norm(aligned.kernel, axis=0), [5.0, 5.0])


def test_class_statistics_kept_step_by_step_give_the_joint_lda_head(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 2, (6, 20))
    y = np.repeat(np.arange(6), 30)
    x = centres[y] + rng.normal(0, 1, (180, 20)) @ rng.normal(0, 1, (20, 20))
    joint = ClassStatistics.of(x, y, tuple("abcdef"), "e", rank=20)
    steps = ClassStatistics.of(x[y < 2], y[y < 2], ("a", "b"), "e", rank=20)
    for first in (2, 4):
        part = (y >= first) & (y < first + 2)
        steps = steps.plus(ClassStatistics.of(x[part], y[part] - first,
                                              tuple("abcdef"[first:first + 2]), "e", rank=20))
    steps.save(tmp_path)
    back = ClassStatistics.load(tmp_path)
    assert back is not None and back.class_names == tuple("abcdef")
    np.testing.assert_allclose(back.head().logits(x), joint.head().logits(x), atol=1e-3)
    assert np.mean(joint.head().predict(x) == y) > 0.9
    low = ClassStatistics.of(x, y, tuple("abcdef"), "e", rank=4)   # 4 of 20 directions kept
    assert np.mean(low.head().predict(x) == joint.head().predict(x)) > 0.9
    assert ClassStatistics.load(tmp_path / "nowhere") is None
    with pytest.raises(ModelError, match="different extractors"):
        steps.plus(ClassStatistics.of(x, y, tuple("ghijkl"), "other"))


def test_union_splits_keep_the_first_parts_splits() -> None:
    alone = split_dataset(load_dataset("digits:0-4"), seed=3)
    union = split_dataset(load_dataset("digits:0-4 + digits:5-9"), seed=3)
    assert union.train.class_names == tuple(str(i) for i in range(10))
    for name in ("train", "val", "test"):
        a, u = alone.get(name), union.get(name)
        old = np.flatnonzero(u.y < 5)
        assert np.array_equal(a.y, u.y[old])
        assert np.array_equal(a.x.read(), u.x.read(old))
    with pytest.raises(DataError, match="more than one part"):
        load_dataset("digits:0-4 + digits:4-6")


@pytest.fixture(scope="module")
def first_step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 0-3 fine-tuned from random small-cnn weights, keeping 10 vectors per class."""
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("inc") / "a"
    return finetune(FinetuneConfig(data="digits:0-3", out=out, epochs=4, finetune_epochs=8,
                                   memory=10, **FAST))


@pytest.fixture(scope="module")
def second_step(first_step: Path) -> Path:
    out = first_step.parent / "ab"
    done = run_main("extend", str(first_step), "--data", "digits:4-6", "--out", str(out),
                   "--memory", "10", "--baseline", "finetune,joint", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "step 1: 7 classes" in done.stdout
    return out


def test_finetune_keeps_a_herded_memory_of_each_class(first_step: Path) -> None:
    memory = FeatureMemory.load(first_step)
    assert memory.class_names == ("0", "1", "2", "3") and memory.per_class == 10
    assert np.bincount(memory.labels).tolist() == [10, 10, 10, 10]
    stats = ClassStatistics.load(first_step)
    assert stats is not None and stats.class_names == memory.class_names
    assert stats.extractor == memory.extractor


def test_extend_grows_one_model_over_old_and_new_classes(second_step: Path) -> None:
    from edge_transfer.core.records import IncrementalHistory
    from edge_transfer.train.runs import Run

    run = Run.open(second_step)
    assert run.labels == tuple(str(i) for i in range(7))
    model = run.load_model()
    assert model.output_shape == (None, 7)
    x, y = run.split_arrays("test")
    top1 = np.argmax(model.predict(x, verbose=0), axis=1)
    metrics = run.metrics
    assert metrics.test_samples == len(y)
    assert np.isclose(np.mean(top1 == y), metrics.test_accuracy, atol=1e-9)
    history = IncrementalHistory.load(second_step)
    first, last = history.steps
    assert first.classes == ("0", "1", "2", "3") and last.classes == ("4", "5", "6")
    assert last.old_samples == int(np.sum(y < 4)) and last.old_change is not None
    assert set(last.forgetting) == {"0", "1", "2", "3"}
    plain, joint = last.baselines["finetune"], last.baselines["joint"]
    assert last.old_accuracy > plain.old_accuracy + 0.3     # the memory kept the old classes
    assert joint.all_accuracy >= last.all_accuracy - 0.1
    assert np.bincount(FeatureMemory.load(second_step).labels).tolist() == [10] * 7


def test_a_third_step_knows_the_whole_history(second_step: Path) -> None:
    from edge_transfer.core.records import IncrementalHistory
    from edge_transfer.train.incremental import ExtendConfig, extend

    out = extend(ExtendConfig(run=second_step, data="digits:7-9",
                              out=second_step.parent / "abc", memory=0,
                              baseline=("finetune",), verbose=0))
    history = IncrementalHistory.load(out)
    assert [s.total_classes for s in history.steps] == [4, 7, 10]
    assert history.last.memory_per_class == 0 and not (out / "memory.npz").exists()
    last, plain = history.last, history.last.baselines["finetune"]
    assert last.old_before is not None and last.old_accuracy is not None
    # no item kept: the class statistics (LDA head) keep the old classes
    assert last.old_accuracy >= last.old_before - 0.05 > plain.old_accuracy + 0.3
    assert (out / "class_stats.npz").exists()


def test_softmax_head_learns_from_the_kept_items(first_step: Path) -> None:
    from edge_transfer.core.records import IncrementalHistory
    from edge_transfer.train.incremental import ExtendConfig, extend

    out = extend(ExtendConfig(run=first_step, data="digits:4-6", head="softmax", memory=10,
                              out=first_step.parent / "ab-softmax", baseline=("finetune",),
                              verbose=0))
    last = IncrementalHistory.load(out).last
    assert last.old_accuracy is not None
    assert last.old_accuracy > last.baselines["finetune"].old_accuracy + 0.3


def test_extend_refuses_classes_the_run_has_and_a_missing_memory(first_step: Path,
                                                                  tmp_path: Path) -> None:
    done = run_main("extend", str(first_step), "--data", "digits:3-5", "--out",
                   str(tmp_path / "x"), "--quiet")
    assert done.returncode == 2 and "more than one part" in done.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in first_step.iterdir():
        if f.name not in ("memory.npz", "class_stats.npz"):
            (bare / f.name).write_bytes(f.read_bytes())
    done = run_main("extend", str(bare), "--data", "digits:4-5", "--out", str(tmp_path / "y"),
                   "--quiet")
    assert done.returncode == 2 and "--memory 0" in done.stderr
    done = run_main("extend", str(bare), "--data", "digits:4-5", "--out", str(tmp_path / "y"),
                   "--head", "lda", "--quiet")
    assert done.returncode == 2 and "--head softmax" in done.stderr


def test_export_report_and_check_see_every_class(second_step: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    done = run_main("export", str(second_step), "--formats", "tflite,onnx", "--precision",
                   "fp32,int8", "--out", str(export))
    assert done.returncode == 0, done.stderr
    record = json.loads((export / "export.json").read_text())
    int8 = [a for a in record["artifacts"] if a["precision"] == "int8"]
    assert len(int8) == 2 and all(a["status"] == "ok" for a in int8)
    done = run_main("report", str(second_step), "--export", str(export), "--out",
                   str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Old classes" in text and "forgetting" in text
    assert "## Classes added step by step" in text and "*How to read this:* every step" in text
    bundle = tmp_path / "bundle"
    done = run_main("bundle", str(second_step), "--export-dir", str(export), "--out", str(bundle))
    assert done.returncode == 0, done.stderr
    from edge_transfer.deploy.bundle import open_bundle

    assert open_bundle(bundle).manifest.labels == tuple(str(i) for i in range(7))
    done = run_main("validate", str(bundle), "--device", "local", "--json",
                   str(tmp_path / "v.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    for row in json.loads((tmp_path / "v.json").read_text())["artifacts"]:
        assert row["status"] == "ok", row
        assert abs(row["accuracy"] - row["workstation_accuracy"]) <= 0.005, row["name"]
        per_class = np.asarray(row["confusion_matrix"])       # every class, old and new
        assert per_class.shape == (7, 7) and per_class.sum(axis=1).min() > 0


def _history(lost: int, gained: int, n: int = 1000, before: float = 0.95) -> object:
    from edge_transfer.core import stats
    from edge_transfer.core.records import Comparison, IncrementalHistory, StepFigures

    right = round(before * n)
    change = stats.paired_counts(right - lost, lost, gained, n - right - gained)
    step = StepFigures(step=1, run="r", classes=("5",), total_classes=6, memory_per_class=20,
                       memory_bytes=0, test_samples=n + 100, all_accuracy=0.9,
                       old_accuracy=change.b.estimate, old_before=before, old_samples=n,
                       old_change=Comparison.of(change))
    return IncrementalHistory(steps=(step,))


def test_check_fails_when_old_classes_drop_beyond_the_tolerance_and_significantly() -> None:
    from edge_transfer.report.gate import Tolerances, old_class_finding

    tol = Tolerances()                                   # --max-old-class-drop 0.03
    assert old_class_finding(_history(lost=60, gained=5), tol).verdict == "fail"   # -5.5 pt
    assert old_class_finding(_history(lost=25, gained=5), tol).verdict == "pass"   # -2 pt
    small = old_class_finding(_history(lost=4, gained=0, n=40), tol)   # -10 pt, p = 0.125
    assert small.verdict == "pass" and "not significant" in small.message
    assert old_class_finding(_history(lost=60, gained=5),
                             Tolerances(max_old_class_drop=0.06)).verdict == "pass"
