"""The pipeline runner: TOML -> argv through the CLI's own parser, dry runs, real dispatch."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import pytest
from report_inputs import edited, write_inputs

from edge_transfer.cli import build_parser, main
from edge_transfer.commands._pipeline import Step, load_pipeline, run_pipeline, step_argv
from edge_transfer.core.errors import EdgeTransferError, UserError

DEMO = Path(str(files("edge_transfer").joinpath("configs/demo.toml")))

PIPELINE = """
[pipeline]
out = "work"

[check]
report = "{out}/report/report.json"
baseline = "baseline.json"
max-accuracy-drop = 0.01
decide = "point"   # 134 test images cannot make a 3-image drop significant; see test_check
max-size-growth = 0.05
allow-different-data = false
junit = "{out}/check.xml"

[report]   # tables run in the fixed step order, not the file's
run = "run"
validation = "validation.json"
out = "{out}/report"
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A folder holding a run's JSON, a validation JSON, a baseline and pipeline.toml."""
    run, validation = write_inputs(tmp_path)
    from edge_transfer.report.build import build_report

    baseline = json.loads(build_report(run, tmp_path / "b", validation_json=validation)
                          .read_text())
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    (tmp_path / "pipeline.toml").write_text(PIPELINE)
    return tmp_path


def test_demo_config_is_the_documented_recipe() -> None:
    pipe = load_pipeline(DEMO, out="/tmp/demo-out")
    assert [s.name for s in pipe.steps] == ["pretrain", "finetune", "export", "bundle",
                                            "validate", "report"]
    pretrain, finetune, export = pipe.steps[:3]
    assert pretrain.get("data") == "digits:0-4" and pretrain.get("backbone") == "small-cnn"
    assert finetune.get("data") == "digits:5-9" and finetune.get("shots") == 5
    assert finetune.get("baseline") == "scratch"
    assert finetune.get("source-data") == "digits:0-4"
    assert export.get("formats") == ("tflite", "onnx") and export.get("qat") is True
    assert set(export.get("precision")) == {"fp32", "fp16", "dynamic", "int8", "int16x8"}
    assert pipe.step("validate").get("device") == "local" and pipe.keep_going


def test_demo_config_keys_are_options_of_the_installed_commands() -> None:
    """Every step whose command is installed takes the demo's keys (all of them, once merged)."""
    parser = build_parser()
    pipe = load_pipeline(DEMO, out="/tmp/demo-out")
    installed = {name for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                 for name in a.choices}
    checked = [s.name for s in pipe.steps if s.name in installed]
    for step in pipe.steps:
        if step.name in installed:
            parser.parse_args(step_argv(pipe, step, parser))
    assert "report" in checked
    argv = step_argv(pipe, pipe.step("report"), parser)
    assert argv == ["report", "/tmp/demo-out/target", "--validation",
                    "/tmp/demo-out/validation.json", "--out", "/tmp/demo-out/report"]


def test_demo_dry_run_lists_its_steps(tmp_path: Path, capsys) -> None:
    parser = build_parser()
    installed = {name for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                 for name in a.choices}
    missing = sorted({"pretrain", "finetune", "export", "bundle", "validate"} - installed)
    assert not missing, f"the demo's commands {', '.join(missing)} are not installed"
    assert main(["demo", "--dry-run", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == ["pretrain", "finetune", "export", "bundle",
                                                   "validate", "report"]


def test_dry_run_prints_commands_in_step_order(project: Path, capsys) -> None:
    assert main(["run", str(project / "pipeline.toml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    work = project / "work"
    assert lines == [
        f"$ edge-transfer report {project / 'run'} --validation {project / 'validation.json'} "
        f"--out {work / 'report'}",
        f"$ edge-transfer check {work / 'report/report.json'} --baseline "
        f"{project / 'baseline.json'} --max-accuracy-drop 0.01 --decide point "
        f"--max-size-growth 0.05 --junit {work / 'check.xml'}",
    ]
    assert not work.exists()


def test_real_dispatch_report_then_check(project: Path, tmp_path_factory, monkeypatch,
                                         capsys) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # paths come from the TOML folder
    assert main(["run", str(project / "pipeline.toml")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "[1/2] report: done" in out and "[2/2] check: done" in out
    report = json.loads((project / "work/report/report.json").read_text())
    assert len(report["artifacts"]) == 10
    assert ET.parse(project / "work/check.xml").getroot().find("testsuite").get("failures") == "0"

    # a better baseline: the check step fails the pipeline with its exit code 1
    better = edited(report, "onnx-int8", workstation_accuracy=0.995)
    (project / "baseline.json").write_text(json.dumps(better))
    assert main(["run", str(project / "pipeline.toml"), "--only", "check"]) == 1
    out = capsys.readouterr().out
    assert "onnx-int8" in out and "check: exit code 1" in out and "report:" not in out

    # bad input inside a step: the pipeline stops with the step's exit code 2 and its message
    (project / "baseline.json").write_text(json.dumps({**report, "data_fingerprint": "0ther"}))
    assert main(["run", str(project / "pipeline.toml"), "--only", "check"]) == 2
    captured = capsys.readouterr()
    assert "[1/1] check failed" in captured.out and "--allow-different-data" in captured.err


def test_only_and_skip(project: Path, capsys) -> None:
    toml = project / "pipeline.toml"
    toml.write_text(PIPELINE.replace("[check]", "[check]\nskip = true"))
    pipe = load_pipeline(toml)
    ran = [r.name for r in run_pipeline(pipe, dry_run=True, echo=lambda s: None)]
    assert ran == ["report"]
    assert [r.name for r in run_pipeline(pipe, only=("check",), dry_run=True,
                                         echo=lambda s: None)] == ["check"]
    assert run_pipeline(pipe, skip=("report",), dry_run=True, echo=lambda s: None) == []
    assert main(["run", str(toml), "--only", "bundle", "--dry-run"]) == 2
    assert "has no [bundle] table" in capsys.readouterr().err
    assert main(["run", str(toml), "--skip", "reprot", "--dry-run"]) == 2
    assert "did you mean 'report'" in capsys.readouterr().err


def _fake_export_parser() -> argparse.ArgumentParser:
    """A parser with issue 3's `export` options (its module is on another branch)."""
    parser = argparse.ArgumentParser(prog="edge-transfer")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("export")
    p.add_argument("run", type=Path)
    p.add_argument("--formats")
    p.add_argument("--precision")
    p.add_argument("--qat", action="store_true")
    p.add_argument("--calibration-samples", type=int)
    p.add_argument("--out", type=Path)
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--images", nargs="+")
    p.add_argument("--artifact", action="append", default=[])
    p.add_argument("--export-dir")
    p.add_argument("--backbone", metavar="NAME|RUN|FILE")
    return parser


def test_values_become_argv(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    pipe = load_pipeline(_toml(tmp_path, 'out = "w"'))
    step = Step("export", (("run", "{out}/target"), ("formats", ("tflite", "onnx")),
                           ("qat", True), ("calibration-samples", 200), ("out", "exports"),
                           ("cache", False), ("images", ("photos", "digits:5-9")),
                           ("artifact", ("tflite-int8", "onnx-int8")), ("export-dir", "ex"),
                           ("backbone", "small-cnn")))
    assert step_argv(pipe, step, _fake_export_parser()) == [
        "export", f"{tmp_path / 'w'}/target", "--formats", "tflite,onnx", "--qat",
        "--calibration-samples", "200", "--out", str(tmp_path / "exports"), "--no-cache",
        "--images", str(tmp_path / "photos"), "digits:5-9",
        "--artifact", "tflite-int8", "--artifact", "onnx-int8",
        "--export-dir", str(tmp_path / "ex"), "--backbone", "small-cnn"]
    assert step_argv(pipe, Step("export", (("run", "r"), ("qat", False))),
                     _fake_export_parser()) == ["export", str(tmp_path / "r")]


@pytest.mark.parametrize(("text", "message"), [
    ('[pipeline]\nout = "w"\n[exprot]\nformats = "tflite"\n', "unknown step [exprot] "
     "(did you mean 'export'?)"),
    ('[pipeline]\nout = "w"\n[report\n', "line 3"),
    ('[pipeline]\nout = "w"\n[check]\nmax-acuracy-drop = 0.02\nreport = "r.json"\n',
     "[check] has no key 'max-acuracy-drop' (did you mean 'max-accuracy-drop'?)"),
    ('[pipeline]\nout = "w"\n[check]\nallow-different-data = "yes"\n', "is a flag"),
    ('[pipeline]\nout = "w"\n[check]\nmax-size-growth = true\n', "takes a value"),
    ('[pipeline]\nout = "w"\n[check]\nreport = "r.json"\n', "required: --baseline"),
    ('[pipeline]\nwork = "w"\n', "[pipeline] has no key 'work'"),
    ('[check]\nreport = "r.json"\n', "no work folder"),
    ('[pipeline]\nout = "p.toml"\n[check]\nreport = "r.json"\nbaseline = "b.json"\n',
     "is a file"),
])
def test_bad_config_names_line_or_key(tmp_path: Path, capsys, text: str, message: str) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(text)
    assert main(["run", str(toml), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def _toml(folder: Path, body: str) -> Path:
    path = folder / "p.toml"
    path.write_text(f"[pipeline]\n{body}\n")
    return path


def _steps_parser(calls: list[str], export_error: Exception) -> argparse.ArgumentParser:
    """`export` fails as given, `report` records that it ran (their real modules come later)."""
    def export(args: argparse.Namespace) -> int:
        calls.append("export")
        raise export_error

    def report(args: argparse.Namespace) -> int:
        calls.append("report")
        return 0

    parser = argparse.ArgumentParser(prog="edge-transfer")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("export").set_defaults(handler=export)
    sub.add_parser("report").set_defaults(handler=report)
    return parser


@pytest.mark.parametrize("keep_going", [False, True])
def test_keep_going_after_a_partly_failed_step(tmp_path: Path, keep_going: bool) -> None:
    toml = _toml(tmp_path, f'out = "w"\nkeep-going = {str(keep_going).lower()}\n[export]\n'
                           "[report]\n")
    pipe = load_pipeline(toml)
    calls: list[str] = []
    failed = EdgeTransferError("1 variant(s) failed: tflite-int8-qat")
    if keep_going:
        results = run_pipeline(pipe, parser=_steps_parser(calls, failed), echo=lambda s: None)
        assert [(r.name, r.exit_code) for r in results] == [("export", 1), ("report", 0)]
    else:
        with pytest.raises(EdgeTransferError):
            run_pipeline(pipe, parser=_steps_parser(calls, failed), echo=lambda s: None)
        assert calls == ["export"]
    calls.clear()
    with pytest.raises(UserError):  # bad input stops the pipeline, keep-going or not
        run_pipeline(pipe, parser=_steps_parser(calls, UserError("no such run")),
                     echo=lambda s: None)
    assert calls == ["export"]
