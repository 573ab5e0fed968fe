"""Command-line options come from the config dataclasses: one default, one choice list, one
help text each; renamed options keep their old spelling as a hidden alias for one release."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge_transfer.cli import build_parser
from edge_transfer.commands._options import flag, option_fields
from edge_transfer.core.errors import ConfigError, UnsupportedExportError, UserError
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.diagnose import DiagnoseConfig
from edge_transfer.report.gate import Tolerances
from edge_transfer.train.config import FinetuneConfig, PretrainConfig

REQUIRED = {"pretrain": ["--data", "digits", "--out", "x"],
            "finetune": ["--data", "digits", "--out", "x"], "export": ["RUN"],
            "check": ["r.json", "--baseline", "b.json"]}
CONFIGS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig, "export": ExportConfig,
           "check": Tolerances}


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sub.format_help()


@pytest.mark.parametrize("command", CONFIGS)
def test_every_option_default_is_the_configs(command: str) -> None:
    config = CONFIGS[command]
    args = build_parser().parse_args([command, *REQUIRED[command]])
    text = _help(command)
    for field in option_fields(config):
        if field.default is not dataclasses.MISSING:
            assert getattr(args, field.name) == field.default, field.name
        assert flag(config, field.name) in text, field.name


@pytest.mark.parametrize(("argv", "field", "value", "old"), [
    (["finetune", *REQUIRED["finetune"], "--precision", "float32"], "mixed_precision",
     "float32", "--precision"),
    (["export", "RUN", "--epochs", "3"], "qat_epochs", 3, "--epochs"),
    (["export", "RUN", "--unsafe"], "unsafe_load", True, "--unsafe"),
    (["finetune", *REQUIRED["finetune"], "--unsafe"], "unsafe_load", True, "--unsafe"),
])
def test_old_spellings_still_work_but_are_hidden(argv: list[str], field: str, value: object,
                                                 old: str) -> None:
    assert getattr(build_parser().parse_args(argv), field) == value
    assert f"{old} " not in _help(argv[0]).replace("-" + old, "")


@pytest.mark.parametrize("command", ["validate", "bench", "predict", "devices", "backbones"])
def test_json_has_one_meaning(command: str) -> None:
    """``--json [OUT]``: to OUT, or to stdout when OUT is - or left out."""
    positional = {"validate": ["B"], "bench": ["R"], "predict": ["m.tflite", "a.png"]}.get(
        command, [])
    parse = build_parser().parse_args
    assert parse([command, *positional]).json is None
    assert parse([command, *positional, "--json"]).json == "-"
    assert parse([command, *positional, "--json", "out.json"]).json == "out.json"


@pytest.mark.parametrize(("make", "field", "value"), [
    (lambda: FinetuneConfig(data="digits", out=Path("x"), precision="float32"),
     "mixed_precision", "float32"),
    (lambda: FinetuneConfig(data="digits", out=Path("x"), unsafe=True), "unsafe_load", True),
    (lambda: ExportConfig(finetune_epochs=3), "qat_epochs", 3),
    (lambda: ExportConfig(out_dir=Path("e")), "out", Path("e")),
    (lambda: DiagnoseConfig(out_dir=Path("e")), "out", Path("e")),
])
def test_old_python_keywords_still_work_with_a_warning(make, field: str, value: object) -> None:
    """One spelling per concept (``out``, ``unsafe_load``...); the old keyword warns."""
    with pytest.warns(DeprecationWarning, match=r"is now"):
        config = make()
    assert getattr(config, field) == value


@pytest.mark.parametrize(("make", "error"), [
    (lambda: FinetuneConfig(data="digits", out=Path("x"), mixed_precision="fp8"), ConfigError),
    (lambda: PretrainConfig(data="digits", out=Path("x"), batch_size=0), ConfigError),
    (lambda: FinetuneConfig(data="digits", out=Path("x"), l2sp=-1), ConfigError),
    (lambda: ExportConfig(qat_epochs=0), UnsupportedExportError),
    (lambda: ExportConfig(jobs=0), UnsupportedExportError),
    (lambda: Tolerances(max_size_growth=-0.1), ConfigError),
])
def test_configs_refuse_bad_values_on_construction(make, error: type[UserError]) -> None:
    with pytest.raises(error) as info:
        make()
    assert info.value.exit_code == 2
