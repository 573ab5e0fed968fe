"""The backbone registry, model files and flattening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_transfer.core.errors import ModelError
from edge_transfer.train import backbones


def test_registry_names_and_preprocessing() -> None:
    assert {"small-cnn", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "resnet50"} <= set(backbones.available())
    pre = backbones.get("mobilenet_v2").preprocessing(96, 96, 1)
    assert (pre.channels, pre.mean, pre.std) == (3, (127.5,), (127.5,))
    # MobileNetV2 wants [-1, 1]: 0 -> -1, 255 -> 1
    x = pre.apply(np.array([[[0, 255]]], np.uint8).reshape(1, 1, 2))
    assert x.min() == -1.0 and x.max() == 1.0
    resnet = backbones.get("resnet50").preprocessing(32, 32)
    assert resnet.channel_order == "bgr" and resnet.mean == (103.939, 116.779, 123.68)
    with pytest.raises(ModelError, match="did you mean vgg16 or vgg19"):
        backbones.get("vgg-16")


def test_every_keras_applications_model_is_registered() -> None:
    """Each keras.applications model by a lower-case name, with keras' own sizes and its
    family's preprocessing (preprocess_input's mode)."""
    from edge_transfer.core.keras import load

    _, keras = load()
    factories = {name for name in dir(keras.applications)
                 if name[0].isupper() and callable(getattr(keras.applications, name))}
    applications = [spec for spec in map(backbones.get, backbones.available())
                    if spec.application]
    assert {spec.application for spec in applications} == factories
    assert all(spec.summary.startswith(f"keras.applications.{spec.application}")
               for spec in applications)
    names = backbones.available()
    assert len(set(names)) == len(names) and all(n == n.lower() for n in names)
    for name in ("convnext_tiny", "efficientnet_v2_b0", "regnetx_002", "densenet121",
                 "resnet50_v2", "mobilenet_v1", "nasnet_mobile", "resnetrs50", "xception"):
        assert name in names
    assert len({spec.family for spec in applications}) == 17   # keras.applications' families
    expect = {"densenet121": ("torch", 224, 32), "convnext_tiny": ("raw", 224, 32),
              "xception": ("tf", 299, 71), "inception_v3": ("tf", 299, 75),
              "efficientnet_b3": ("raw", 300, 32), "efficientnet_v2_s": ("raw", 384, 32),
              "vgg19": ("caffe", 224, 32), "resnet101_v2": ("tf", 224, 32),
              "nasnet_large": ("tf", 331, 32)}
    for name, (mode, default, smallest) in expect.items():
        spec = backbones.get(name)
        assert (spec.preprocessing_mode, spec.default_size, spec.min_size) == (
            mode, default, smallest), name
    torch = backbones.get("densenet121").preprocessing(32, 32, 1)
    x = torch.apply(np.full((1, 2, 2, 1), 255, np.uint8))
    np.testing.assert_allclose(x[0, 0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                            (1 - 0.406) / 0.225], rtol=1e-5)


def test_backbones_command_lists_all_without_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import json, sys, io, contextlib\n"
            "from edge_transfer.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    assert main(['backbones', '--json']) == 0\n"
            "rows = json.loads(out.getvalue())\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
            "row = next(r for r in rows if r['name'] == 'mobilenet_v2')\n"
            "print(len(rows), row['name'], row['default_size'])\n")
    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(backbones.available())), "mobilenet_v2", "224"]


def test_small_cnn_is_flat_and_uses_the_data_size() -> None:
    from edge_transfer.train.models import is_flat

    backbone = backbones.resolve("small-cnn", (8, 8, 1))
    assert backbone.preprocessing.input_shape == (8, 8, 1)
    assert backbone.extractor.input_shape == (None, 8, 8, 1)
    assert is_flat(backbone.extractor) and not backbone.pretrained


def test_flatten_nested_model_keeps_outputs() -> None:
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import cut_model, flatten_model, is_flat

    _, keras = load()
    inner = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.Flatten(name="flat")], name="inner")
    outer_in = keras.Input((8, 8, 1))
    outer = keras.Model(outer_in, keras.layers.Dense(3, name="out")(inner(outer_in)))
    assert not is_flat(outer)
    flat = flatten_model(outer)
    assert is_flat(flat) and [layer.name for layer in flat.layers][1:] == ["c1", "flat", "out"]
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    np.testing.assert_allclose(flat(x).numpy(), outer(x).numpy(), atol=1e-6)
    assert cut_model(outer, "c1").output.shape[1:] == (6, 6, 4)
    with pytest.raises(ModelError, match="no layer 'nope'"):
        cut_model(outer, "nope")


def test_load_keras_model_errors(tmp_path: Path) -> None:
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import load_keras_model

    with pytest.raises(ModelError, match="does not exist"):
        load_keras_model(tmp_path / "missing.keras")
    (tmp_path / "corrupt.keras").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="corrupt"):
        load_keras_model(tmp_path / "corrupt.keras")
    _, keras = load()
    inputs = keras.Input((2,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    lambda_model.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match="--unsafe"):
        load_keras_model(tmp_path / "lambda.keras")
    assert load_keras_model(tmp_path / "lambda.keras", unsafe_load=True) is not None


def test_cut_layer_backbone_from_a_run(tiny_run: Path, tmp_path: Path) -> None:
    """A fine-tuned model.keras (with its preprocessing.json beside it) as a backbone."""
    backbone = backbones.resolve(str(tiny_run / "model.keras"), (8, 8, 1),
                                 cut_layer="features")
    assert backbone.preprocessing.input_shape == (8, 8, 1)
    assert backbone.extractor.output.shape[-1] > 5


@pytest.mark.slow
def test_mobilenet_v2_weights_file_and_finetune(tmp_path: Path) -> None:
    """keras.applications MobileNetV2 (alpha 0.35, 32 px) from a weights file saved here."""
    from edge_transfer.train.models import is_flat, load_keras_model
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    made = backbones.create("mobilenet_v2", (32, 32, 3), weights="none", width=0.35)
    conv = made.extractor.get_layer("Conv1")
    marked = np.full(conv.kernel.shape, 0.0125, np.float32)
    conv.kernel.assign(marked)
    weights = tmp_path / "mnv2.h5"
    made.extractor.save_weights(weights)

    loaded = backbones.create("mobilenet_v2", (32, 32, 3), weights=str(weights), width=0.35)
    np.testing.assert_array_equal(loaded.extractor.get_layer("Conv1").kernel.numpy(), marked)
    assert loaded.pretrained

    out = finetune(FinetuneConfig(
        data="digits:5-9", out=tmp_path / "run", backbone="mobilenet_v2", weights=str(weights),
        width=0.35, input_size=32, shots=10, epochs=2, finetune_epochs=2, unfreeze=10,
        batch_size=16, verbose=0))
    model = load_keras_model(out / "model.keras")
    assert is_flat(model) and model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 5)
    info = json.loads((out / "run.json").read_text())
    assert info["backbone"]["weights"] == str(weights)
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["test_accuracy"] <= 1.0


def test_support_matrix_comes_from_the_benchmark_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from edge_transfer.cli import main
    from edge_transfer.report.support import markdown_table

    row = {"name": "regnetx_002", "family": "RegNetX", "input_size": 32, "params": 2_300_000,
           "float_accuracy": 0.9,
           "train": {"status": "ok", "val_accuracy": 0.9, "above_chance": True},
           "variants": {"onnx-fp32": {"status": "ok", "accuracy": 0.9, "seconds": 12.0},
                        "onnx-int8": {"status": "failed", "accuracy": 0.5, "seconds": 9.0,
                                      "reason": "accuracy 0.5 is more than ..."},
                        "tflite-fp32": {"status": "failed", "accuracy": None,
                                        "reason": "tflite-fp32 needs SELECT_TF_OPS (Foo)"}}}
    results = tmp_path / "backbones.json"
    results.write_text(json.dumps({"models": [row], "not_finished": []}))
    assert main(["backbones", "--json", "--family", "RegNetX", "--results", str(results)]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["regnetx_002"]["measured"] == row and listed["regnetx_004"]["measured"] is None
    table = markdown_table({"models": [row]})
    assert "| `regnetx_002` | RegNetX | 32 px | 2.3 M | yes 0.90 |" in table
    assert "failed: tflite-fp32 needs SELECT_TF_OPS (Foo)" in table
    assert "failed: accuracy 0.50 vs float 0.90" in table and "ok 0.90 (12 s)" in table


def test_matrix_rows_say_chance_show_input_size_and_no_temporary_paths() -> None:
    from edge_transfer.report.support import markdown_table

    crashed = {"name": "convnext_tiny", "variants": {}, "train": {
        "status": "failed",
        "reason": "process exited 1: edge_transfer.core.errors.ModelError: cannot "
                  "load /tmp/bench-convnext_tiny-ermvna1l/convnext_tiny/"
                  "model.keras: bad"}}
    chance = {"name": "vgg16", "family": "VGG", "input_size": 32, "float_accuracy": 0.2,
              "train": {"status": "ok", "val_accuracy": 0.2, "above_chance": False},
              "variants": {"tflite-fp32": {"status": "ok", "accuracy": 0.2, "seconds": 10.0}}}
    table = markdown_table({"models": [crashed, chance]})
    assert "| `convnext_tiny` | ConvNeXt | 32 px |" in table       # from the registry
    assert "cannot load convnext_tiny/model.keras: bad" in table and "/tmp" not in table
    assert "| `vgg16` | VGG | 32 px | - | NO (chance) 0.20 | at chance 0.20 (matches float; " \
           "10 s) |" in table


def test_a_registry_entry_is_a_whole_backbone(tmp_path: Path) -> None:
    """``pixels`` (one registry entry, no learned features) goes the whole way through the CLI:
    listed, trained (the head alone: a linear classifier of the pixels, which on digits is
    far above chance), and exported to both formats, int8 included."""
    from conftest import run_main

    spec = backbones.get("pixels")
    assert spec.family in backbones.families() and not spec.application
    listed = run_main("backbones", "--family", "pixels")
    assert listed.returncode == 0 and "pixels" in listed.stdout, listed.stderr
    run = tmp_path / "run"
    trained = run_main("finetune", "--data", "digits:5-9", "--backbone", "pixels", "--out",
                       str(run), "--epochs", "30", "--finetune-epochs", "0", "--learning-rate",
                       "0.01", "--quiet")
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8, metrics          # chance is 0.2
    exported = run_main("export", str(run), "--formats", "tflite,onnx", "--precision",
                        "fp32,int8", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    export = json.loads((tmp_path / "export" / "export.json").read_text())
    assert {a["name"]: a["status"] for a in export["artifacts"]} == {
        "tflite-fp32": "ok", "tflite-int8": "ok", "onnx-fp32": "ok", "onnx-int8": "ok"}
