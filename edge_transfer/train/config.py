"""The options of ``pretrain`` and ``finetune``: typed frozen dataclasses the CLI reads
(:func:`edge_transfer.commands._options.add_config_options`: each field is one ``--option``
with its help), checked on construction before anything heavy runs.

>>> FinetuneConfig(data="digits:5-9", out=Path("run"), shots=10).finetune_epochs
40
"""

from __future__ import annotations

import os
from dataclasses import InitVar, dataclass
from pathlib import Path

from edge_transfer.core.errors import ConfigError
from edge_transfer.core.fields import option, renamed, required
from edge_transfer.data import sources
from edge_transfer.train import backbones
from edge_transfer.train.input_range import INPUT_RANGES

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
MIXED_PRECISIONS = ("auto", "float32", "mixed_float16")
BASELINES = ("scratch",)


@dataclass(frozen=True)
class TrainingConfig:
    """Options shared by pretrain and finetune (see ``edge-transfer finetune --help``);
    checked on construction (bad values raise :class:`~edge_transfer.core.errors.ConfigError`).

    >>> TrainingConfig(data="digits", out=Path("run"), dropout=1.5)
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.ConfigError: --dropout must be in [0, 1), got 1.5
    """

    data: str = required(sources.help_text(), metavar="SPEC")
    out: Path = required("run directory to write (created; files in it are replaced)",
                         metavar="RUN")
    backbone: str = option(
        "small-cnn",
        "feature extractor: small-cnn (fast on a CPU, any input size), pixels (no learned "
        "features: a linear baseline), or any "
        "keras.applications model by a lower-case name (mobilenet_v2, mobilenet_v3_small, "
        "efficientnet_b0, efficientnet_v2_b0, convnext_tiny, regnetx_002, densenet121, "
        "resnet50_v2, ...; `edge-transfer backbones` lists them all); or the --out folder of a "
        "pretrain run (its extractor.keras); or a .keras file cut at --cut-layer",
        metavar="NAME|RUN|FILE")
    weights: str | None = option(
        None, "starting weights of a named backbone: imagenet (Keras' download cache), none "
              "(random) or a weights file saved from the same backbone (default: imagenet for "
              "keras.applications, none for small-cnn)", metavar="imagenet|none|PATH")
    input_size: int | None = option(
        None, "square input side in pixels (default: 224 for keras.applications, the data's "
              "own size for small-cnn); images are resized to it", metavar="PX")
    width: float = option(1.0, "width multiplier (MobileNet alpha; small-cnn filters)",
                           metavar="ALPHA")
    cut_layer: str | None = option(
        None, "with a .keras backbone file: the layer whose output is the features (default: "
              "the layer before the last)", metavar="NAME")
    input_range: str = option(
        "auto", "the pixel range the backbone is fed: auto (0..255 when its first layers "
                "scale pixels themselves, as keras.applications' Rescaling/Normalization do; "
                "else its preprocessing.json, the registry's range, or pixels / 255), raw "
                "(0..255), unit (pixels / 255: 0..1) or symmetric (pixels / 127.5 - 1: -1..1); "
                "the choice is printed and written to preprocessing.json",
        choices=INPUT_RANGES)
    unsafe_load: bool = option(False, "allow Lambda layers (arbitrary code) in a backbone "
                                       "file you trust", aliases=("--unsafe",))
    epochs: int = option(40, "maximum epochs; early stopping usually ends sooner")
    batch_size: int = option(32, "global batch size")
    learning_rate: float = option(1e-3, "Adam learning rate")
    patience: int = option(8, "epochs without a better validation loss before stopping; the "
                               "best weights are restored")
    dropout: float = option(0.2, "dropout before the classifier")
    seed: int = option(0, "seed of the split, the weights and the shuffling; the same seed "
                           "gives the same run on a CPU")
    val_fraction: float = option(0.15, "fraction of each class for validation")
    test_fraction: float = option(0.25, "fraction of each class held out for the test")
    shots: int | None = option(None, "keep only K training images per class (the "
                                      "limited-data case); validation and test keep their "
                                      "full size", metavar="K")
    val_data: str | None = option(None, "data used as the validation split (the same class "
                                        "names as --data)", metavar="SPEC")
    test_data: str | None = option(None, "data used as the test split (the same class names "
                                         "as --data)", metavar="SPEC")
    cache: Path | None = option(None, "keep the decoded training images of large data in "
                                      "files under DIR (small splits are cached in memory "
                                      "anyway)", metavar="DIR")
    eval_samples: int = option(300, "validation images (a fixed stratified subset) evaluated "
                                    "each epoch for early stopping, and for the final "
                                    "validation accuracy (raise it for many classes); test "
                                    "figures use the whole test split", metavar="N")
    eval_batch_size: int = option(256, "batch size of evaluation passes", metavar="N")
    augment: bool = option(False, "random shifts, zooms and small rotations of training "
                                   "images")
    flip: bool = option(False, "random left-right flips of training images (for photos and "
                                "clothing; not for digits or text, which a mirror changes)")
    skip_bad_files: bool = option(False, "skip unreadable images in a folder instead of "
                                          "stopping")
    strategy: str = option(
        "auto", "tf.distribute strategy: auto (mirrored over several GPUs, else default), "
                "default (one device), mirrored (all GPUs, or all logical CPUs), multiworker "
                "(processes described by TF_CONFIG; the chief writes the run)",
        choices=STRATEGIES)
    mixed_precision: str = option(
        "auto", "Keras mixed-precision policy while training: auto is mixed_float16 on a GPU, "
                "float32 otherwise; the output layer stays float32",
        choices=MIXED_PRECISIONS, aliases=("--precision",))
    cpu_devices: int | None = option(None, "split the CPU into N logical devices (to try "
                                            "--strategy mirrored without GPUs)", metavar="N")
    verbose: int = 1                    # 0 silent, 1 progress bars, 2 one line per epoch
    # Old names of mixed_precision and unsafe_load, accepted for one release (hidden, like
    # --precision and --unsafe).
    precision: InitVar[str | None] = None
    unsafe: InitVar[bool | None] = None

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The names of the random changes applied to training images (``tfdata``'s).

        >>> TrainingConfig(data="digits", out=Path("run"), flip=True).augmentations
        ('flip',)
        """
        return tuple(name for name, on in (("shift", self.augment), ("flip", self.flip)) if on)

    def __post_init__(self, precision: str | None, unsafe: bool | None) -> None:
        """Refuse bad options before anything heavy runs."""
        renamed(self, "precision", "mixed_precision", precision)
        renamed(self, "unsafe", "unsafe_load", unsafe)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("input-range", self.input_range, INPUT_RANGES)
        _check_choice("mixed-precision", self.mixed_precision, MIXED_PRECISIONS)
        for name in ("epochs", "batch_size", "patience", "eval_samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.learning_rate > 0:
            raise ConfigError("--learning-rate must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.cpu_devices is not None and self.cpu_devices < 1:
            raise ConfigError("--cpu-devices must be at least 1")
        if self.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs TF_CONFIG (cluster and task) set "
                              "in each worker's environment")
        path = Path(self.backbone)
        if not path.exists():
            backbones.check_options(self.backbone, self.input_size, self.width,
                                    self.weights or backbones.default_weights(self.backbone))
        elif path.is_file():  # a damaged model file fails here, before TensorFlow loads
            from edge_transfer.train.models import check_model_file

            check_model_file(path, self.unsafe_load)
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")


@dataclass(frozen=True)
class PretrainConfig(TrainingConfig):
    """Train an extractor with a temporary head on the source task."""

    epochs: int = option(60, "maximum epochs; early stopping usually ends sooner")


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig):
    """Head on the frozen extractor, then fine-tune the top layers at a lower learning rate."""

    epochs: int = option(40, "maximum epochs of the head stage; early stopping usually ends "
                              "sooner")
    finetune_epochs: int = option(40, "maximum epochs of stage 2; 0 keeps the extractor "
                                       "frozen")
    finetune_lr_factor: float = option(0.1, "stage 2 learning rate = --learning-rate x this")
    unfreeze: int | None = option(None, "stage 2 trains the top N weight layers of the "
                                         "extractor, or all (default: all)", metavar="N|all")
    l2sp: float = option(0.0, "L2-SP: add ALPHA x squared distance of the extractor's kernels "
                               "from their starting values to the loss, to keep source "
                               "knowledge (0: off)", metavar="ALPHA")
    source_data: str | None = option(
        None, "also measure source-task test accuracy before and after fine-tuning (the "
              "forgetting figure), with the pretrain run's source head, or a linear probe "
              "trained on the frozen start", metavar="SPEC")
    source_samples: int = option(
        1000, "source-task test images (a fixed stratified subset, seeded; the whole split "
              "when smaller) the source accuracy before and after is measured on, the same "
              "images both times", metavar="N")
    baseline: str | None = option(
        None, "scratch: also train the same architecture from random weights on the same data "
              "and epoch budget -> scratch_test_accuracy", choices=BASELINES)
    memory: int = option(20, "feature vectors kept per class (herding, no pixels) in "
                             "RUN/memory.npz, for `edge-transfer extend` (0: none)",
                         metavar="N")

    def __post_init__(self, precision: str | None, unsafe: bool | None) -> None:
        super().__post_init__(precision, unsafe)
        if self.finetune_epochs < 0:
            raise ConfigError("--finetune-epochs must be 0 or more")
        if not self.finetune_lr_factor > 0:
            raise ConfigError("--finetune-lr-factor must be positive")
        if self.unfreeze is not None and self.unfreeze < 0:
            raise ConfigError("--unfreeze must be a number of layers >= 0, or all")
        if self.l2sp < 0:
            raise ConfigError("--l2sp must be 0 or more")
        if self.source_samples < 1:
            raise ConfigError("--source-samples must be at least 1")
        if self.memory < 0:
            raise ConfigError(f"--memory must be 0 or more, got {self.memory}")
        if self.baseline is not None:
            _check_choice("baseline", self.baseline, BASELINES)


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{flag} {value} is unknown; use {'|'.join(choices)}")
