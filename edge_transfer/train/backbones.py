"""Feature extractors by name, with the preprocessing each one expects.

A backbone turns preprocessed images into a feature vector. Names come from a registry
(:func:`available`); :func:`resolve` also accepts a pretrain run directory (its
``extractor.keras``) or a ``.keras`` file cut at a layer.

>>> "mobilenet_v2" in available() and get("mobilenet_v2").application
'MobileNetV2'
>>> spec = get("mobilenet_v2")
>>> spec.preprocessing(96, 96).mean
(127.5,)
>>> backbone = create("small-cnn", (8, 8, 1))
>>> backbone.extractor.output.shape
TensorShape([None, 1024])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConfigError, ModelError, one_line
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.train.input_range import InputDecision, choose

SCRATCH_BN_MOMENTUM = 0.9
EXTRACTOR_FILE = "extractor.keras"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone and what its input must look like."""

    name: str
    build: Callable[..., Any]            # (input_shape, weights, width) -> keras.Model
    default_size: int | None             # None: the data's own size
    min_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "rgb"
    rgb: bool = True                     # needs 3 channels
    widths: tuple[float, ...] | None = None   # allowed width multipliers; None: any
    has_imagenet: bool = True
    summary: str = ""
    family: str = ""
    preprocessing_mode: str = ""         # tf | torch | caffe | raw (see PREPROCESSING_MODES)
    application: str = ""                # its keras.applications factory; "" for our own

    def preprocessing(self, height: int, width: int, channels: int = 3) -> Preprocessing:
        return Preprocessing(height=height, width=width, channels=3 if self.rgb else channels,
                             mean=self.mean, std=self.std,
                             channel_order=self.channel_order)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data (for ``edge-transfer backbones --json``)."""
        return {"name": self.name, "family": self.family, "default_size": self.default_size,
                "min_size": self.min_size, "widths": list(self.widths) if self.widths else None,
                "preprocessing": self.preprocessing_mode, "mean": list(self.mean),
                "std": list(self.std), "channel_order": self.channel_order,
                "imagenet": self.has_imagenet, "summary": self.summary}


@dataclass(frozen=True)
class Backbone:
    """A built extractor (flat functional tf_keras model -> feature vector) and its input."""

    name: str
    extractor: Any
    preprocessing: Preprocessing
    weights: str                        # "imagenet" | "none" | a path | "pretrained"
    source: str                         # registry name, run dir or model file
    input: InputDecision | None = None  # what it is fed and why (input_range.choose)

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"


def _small_cnn(input_shape: tuple[int, int, int], weights: str | None, width: float) -> Any:
    """Conv-BN-ReLU pairs, halving the resolution down to about 4 px, then flattened.

    Flattening (not global pooling) keeps where strokes are, which small images need:
    on digits a 0-4 extractor transfers to 5-9 far better so.
    """
    _, keras = _load()
    filters = max(8, round(32 * width))
    stages = max(1, int(math.log2(max(4, min(input_shape[:2])) / 4)) + 1)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for stage in range(stages):
        for j in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"conv{stage}_{j}")(x)
            x = keras.layers.BatchNormalization(momentum=SCRATCH_BN_MOMENTUM,
                                                name=f"bn{stage}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{j}")(x)
        if stage < stages - 1:
            x = keras.layers.MaxPooling2D(name=f"pool{stage}")(x)
            filters = min(2 * filters, max(8, round(128 * width)))
    x = keras.layers.Flatten(name="features")(x)
    model = keras.Model(inputs, x, name="small_cnn")
    if weights not in (None, "none"):
        _load_weights_file(model, weights)
    return model


def _pixels(input_shape: tuple[int, int, int], weights: str | None, width: float) -> Any:
    """The pixels as the features: the head on top is a linear classifier of the image."""
    _, keras = _load()
    inputs = keras.Input(input_shape, name="image")
    model = keras.Model(inputs, keras.layers.Flatten(name="features")(inputs), name="pixels")
    if weights not in (None, "none"):
        raise ConfigError("the pixels backbone has no weights; drop --weights")
    return model


def _application(factory: str, width_arg: str | None = None,
                 **fixed: Any) -> Callable[..., Any]:
    def build(input_shape: tuple[int, int, int], weights: str | None, width: float) -> Any:
        _, keras = _load()
        kwargs = dict(fixed)
        if width_arg:
            kwargs[width_arg] = width
        return getattr(keras.applications, factory)(
            input_shape=input_shape, include_top=False, weights=weights, pooling="avg", **kwargs
        )
    return build


# keras.applications' preprocess_input modes as (mean, std, channel order) on 0..255 pixels.
PREPROCESSING_MODES: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {
    "tf": ((127.5,), (127.5,), "rgb"),                                      # to [-1, 1]
    "torch": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "rgb"),  # ImageNet mean/std
    "caffe": ((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), "bgr"),         # BGR, mean only
    "raw": ((0.0,), (1.0,), "rgb"),        # 0..255: the model rescales and normalises inside
}


@dataclass(frozen=True)
class _Family:
    """One keras.applications family: its models as (name, factory, default input side)."""

    name: str
    mode: str
    min_size: int
    models: tuple[tuple[str, str, int], ...]
    width_arg: str | None = None
    widths: tuple[float, ...] | None = (1.0,)
    kwargs: tuple[tuple[str, Any], ...] = ()


def _sizes(prefix: str, factory: str, sizes: dict[str, int]) -> tuple[tuple[str, str, int], ...]:
    return tuple((f"{prefix}{key.lower()}", f"{factory}{key}", size)
                 for key, size in sizes.items())


_REGNET_SIZES = dict.fromkeys(("002", "004", "006", "008", "016", "032", "040", "064", "080",
                               "120", "160", "320"), 224)
# Every keras.applications family; default and minimum sizes as keras.applications states them.
_FAMILIES = (
    _Family("ConvNeXt", "raw", 32, _sizes("convnext_", "ConvNeXt", dict.fromkeys(
        ("Tiny", "Small", "Base", "Large", "XLarge"), 224))),
    _Family("DenseNet", "torch", 32, _sizes("densenet", "DenseNet",
                                            dict.fromkeys(("121", "169", "201"), 224))),
    _Family("EfficientNet", "raw", 32, _sizes("efficientnet_", "EfficientNet", dict(zip(
        ("B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7"),
        (224, 240, 260, 300, 380, 456, 528, 600), strict=True)))),
    _Family("EfficientNetV2", "raw", 32, _sizes("efficientnet_v2_", "EfficientNetV2", dict(zip(
        ("B0", "B1", "B2", "B3", "S", "M", "L"), (224, 240, 260, 300, 384, 480, 480),
        strict=True)))),
    _Family("InceptionV3", "tf", 75, (("inception_v3", "InceptionV3", 299),)),
    _Family("InceptionResNetV2", "tf", 75,
            (("inception_resnet_v2", "InceptionResNetV2", 299),)),
    _Family("MobileNet", "tf", 32, (("mobilenet_v1", "MobileNet", 224),), "alpha",
            (0.25, 0.5, 0.75, 1.0)),
    _Family("MobileNetV2", "tf", 32, (("mobilenet_v2", "MobileNetV2", 224),), "alpha",
            (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    _Family("MobileNetV3", "tf", 32, (("mobilenet_v3_small", "MobileNetV3Small", 224),
                                      ("mobilenet_v3_large", "MobileNetV3Large", 224)),
            "alpha", None, (("include_preprocessing", False),)),
    _Family("NASNet", "tf", 32, (("nasnet_mobile", "NASNetMobile", 224),
                                 ("nasnet_large", "NASNetLarge", 331))),
    _Family("RegNetX", "raw", 32, _sizes("regnetx_", "RegNetX", _REGNET_SIZES)),
    _Family("RegNetY", "raw", 32, _sizes("regnety_", "RegNetY", _REGNET_SIZES)),
    _Family("ResNet", "caffe", 32, _sizes("resnet", "ResNet",
                                          dict.fromkeys(("50", "101", "152"), 224))),
    _Family("ResNetV2", "tf", 32, tuple((f"resnet{n}_v2", f"ResNet{n}V2", 224)
                                        for n in ("50", "101", "152"))),
    _Family("ResNetRS", "raw", 32, _sizes("resnetrs", "ResNetRS", dict.fromkeys(
        ("50", "101", "152", "200", "270", "350", "420"), 224))),
    _Family("VGG", "caffe", 32, _sizes("vgg", "VGG", dict.fromkeys(("16", "19"), 224))),
    _Family("Xception", "tf", 71, (("xception", "Xception", 299),)),
)


def _application_specs() -> tuple[BackboneSpec, ...]:
    specs = []
    for family in _FAMILIES:
        mean, std, order = PREPROCESSING_MODES[family.mode]
        note = " (0..255 input)" if family.mode == "raw" else (
            " (BGR, mean subtracted)" if family.mode == "caffe" else "")
        for name, factory, size in family.models:
            specs.append(BackboneSpec(
                name, _application(factory, family.width_arg, **dict(family.kwargs)), size,
                family.min_size, mean, std, channel_order=order, widths=family.widths,
                summary=f"keras.applications.{factory}{note}", family=family.name,
                preprocessing_mode=family.mode, application=factory))
    return tuple(specs)


# The original six first, in their historical order; then every other family, by family.
_FIRST = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "resnet50")
_APPS = {spec.name: spec for spec in _application_specs()}
_REGISTRY: dict[str, BackboneSpec] = {
    "small-cnn": BackboneSpec("small-cnn", _small_cnn, None, 4, (0.0,), (255.0,), rgb=False,
                              has_imagenet=False, family="small-cnn",
                              summary="small conv net, fast on a CPU, any size >= 4"),
    "pixels": BackboneSpec("pixels", _pixels, None, 1, (0.0,), (255.0,), rgb=False,
                           has_imagenet=False, family="pixels",
                           summary="no learned features: the flattened pixels (a linear "
                                   "classifier's baseline; transfer must beat it)"),
    **{name: _APPS[name] for name in _FIRST},
    **{name: spec for name, spec in _APPS.items() if name not in _FIRST},
}


def families(*, applications: bool = False) -> dict[str, tuple[str, ...]]:
    """Registered names by family, in registry order; with ``applications``, only the
    families built from keras.applications (what the family sweeps test).

    >>> families()["RegNetX"][:2]
    ('regnetx_002', 'regnetx_004')
    >>> "small-cnn" in families(applications=True)
    False
    """
    out: dict[str, list[str]] = {}
    for spec in _REGISTRY.values():
        if spec.application or not applications:
            out.setdefault(spec.family, []).append(spec.name)
    return {family: tuple(names) for family, names in out.items()}


def available() -> tuple[str, ...]:
    """Registered backbone names."""
    return tuple(_REGISTRY)


def get(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown backbone {name!r}; {_suggest(name)}") from None


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower().replace("-", "_"), available(), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    shown = [n for n in available() if not _REGISTRY[n].application] + list(_FIRST)
    return (f"{hint}use one of {', '.join(shown)}, ... (`edge-transfer backbones` "
            f"lists all {len(available())}), a pretrain run directory or a .keras file")


def check_options(name: str, input_size: int | None, width: float, weights: str | None) -> None:
    """Validate options for a registry backbone before anything heavy happens."""
    spec = get(name)
    if input_size is not None and input_size < spec.min_size:
        raise ConfigError(f"--input-size {input_size} is below {name}'s minimum "
                        f"{spec.min_size}; use --input-size {spec.min_size} or more")
    if spec.widths is not None and width not in spec.widths:
        raise ConfigError(f"--width {width} is not available for {name}; use one of "
                        f"{', '.join(str(w) for w in spec.widths)}")
    if width <= 0:
        raise ConfigError(f"--width must be positive, got {width}")
    if weights == "imagenet" and not spec.has_imagenet:
        raise ConfigError(f"{name} has no ImageNet weights; use --weights none or a weights file")
    if weights not in (None, "none", "imagenet") and not Path(weights).is_file():
        raise ConfigError(f"weights file {weights} does not exist; give an existing file, "
                        "imagenet or none")


def default_weights(name: str) -> str:
    """ImageNet for keras.applications backbones, random (``none``) for small-cnn."""
    return "imagenet" if get(name).has_imagenet else "none"


def create(
    name: str,
    input_shape: tuple[int, int, int],
    weights: str | None = None,
    width: float = 1.0,
    input_range: str = "auto",
) -> Backbone:
    """Build a registry backbone for ``input_shape`` (H, W, C of the data).

    ``weights``: ``"imagenet"`` (through Keras' download cache), ``"none"`` (random; BatchNorm
    momentum lowered to 0.9 so short training on small data leaves usable statistics) or the
    path of a weights file saved from the same architecture. ``None`` picks
    :func:`default_weights`. ``input_range`` (raw|unit|symmetric) overrides the input the
    model is fed (see :func:`edge_transfer.train.input_range.choose`).
    """
    spec = get(name)
    weights = weights or default_weights(name)
    check_options(name, None, width, weights)
    height, width_px = input_shape[:2]
    pre = spec.preprocessing(height, width_px, input_shape[2])
    arg = None if weights == "none" else weights
    try:
        extractor = spec.build(pre.input_shape, arg, width)
    except ValueError as exc:
        raise ModelError(f"cannot build {name} ({one_line(exc, first=True)}); check --width, "
                         "--input-size and --weights") from exc
    except Exception as exc:  # Keras' download raises plain Exception without network
        interrupts.check(exc)
        if weights == "imagenet":
            raise ModelError(
                f"cannot get ImageNet weights for {name} ({one_line(exc, first=True)}); connect "
                "to the internet once (Keras caches them in ~/.keras/models), or pass "
                "--weights PATH or --weights none"
            ) from exc
        raise
    from edge_transfer.train.models import flatten_model, set_batchnorm

    extractor = flatten_model(extractor)
    if weights == "none":
        set_batchnorm(extractor, momentum=SCRATCH_BN_MOMENTUM)
    pre, decision = choose(extractor, pre, "registry", name, input_range)
    return Backbone(name, extractor, pre, weights, name, decision)


def resolve(
    backbone: str,
    data_shape: tuple[int, int, int],
    weights: str | None = None,
    input_size: int | None = None,
    width: float = 1.0,
    cut_layer: str | None = None,
    unsafe_load: bool = False,
    input_range: str = "auto",
) -> Backbone:
    """A registry name, a pretrain run directory or a model file -> a :class:`Backbone`.

    ``data_shape`` is the (H, W, C) of the data; a registry backbone uses ``input_size``
    (square) or its default, small-cnn the data's own size. ``input_range`` (auto, raw, unit,
    symmetric): what the model is fed; auto reads the model's own first layers, a record
    (``preprocessing.json``) or the registry (:func:`edge_transfer.train.input_range.choose`).
    """
    path = Path(backbone)
    if backbone in _REGISTRY:
        spec = get(backbone)
        size = input_size or spec.default_size
        shape = (size, size, data_shape[2]) if size else data_shape
        check_options(backbone, size, width, weights or default_weights(backbone))
        return create(backbone, shape, weights, width, input_range)
    if path.is_dir():
        return load_extractor(path, unsafe_load, input_range)
    if path.is_file():
        return load_cut_model(path, cut_layer, unsafe_load, input_range)
    raise ModelError(f"unknown backbone {backbone!r}; {_suggest(backbone)}")


def load_extractor(run_dir: Path, unsafe_load: bool = False,
                   input_range: str = "auto") -> Backbone:
    """The ``extractor.keras`` + ``preprocessing.json`` of a pretrain run directory."""
    from edge_transfer.train.models import flatten_model, load_keras_model

    file = run_dir / EXTRACTOR_FILE
    if not file.is_file():
        raise ModelError(f"{run_dir} has no {EXTRACTOR_FILE}; give the --out folder of "
                         "`edge-transfer pretrain`, or a backbone name")
    record = run_dir / "preprocessing.json"
    extractor = flatten_model(load_keras_model(file, unsafe_load=unsafe_load))
    pre, decision = choose(extractor, Preprocessing.load(record), "record", str(record),
                           input_range)
    return Backbone(str(run_dir), extractor, pre, "pretrained", str(run_dir), decision)


def load_cut_model(file: Path, cut_layer: str | None, unsafe_load: bool = False,
                   input_range: str = "auto") -> Backbone:
    """A saved model cut at ``cut_layer`` (default: before its last layer).

    Its input: ``input_range`` when given, else a ``preprocessing.json`` beside the file, else
    0..255 when the model scales pixels itself (its first layers), else pixels / 255.
    """
    from edge_transfer.train.models import cut_model, load_keras_model

    model = load_keras_model(file, unsafe_load=unsafe_load)
    extractor = cut_model(model, cut_layer)
    sidecar = file.with_name("preprocessing.json")
    if sidecar.is_file():
        pre, reason, source = Preprocessing.load(sidecar), "record", str(sidecar)
    else:
        shape = tuple(model.inputs[0].shape[1:])
        if None in shape or len(shape) != 3:
            raise ModelError(f"{file} has input shape {shape}; it needs a fixed (H, W, C) "
                             "input, or a preprocessing.json beside it")
        pre = Preprocessing(height=shape[0], width=shape[1], channels=shape[2])
        reason, source = "assumed", file.name
    pre, decision = choose(extractor, pre, reason, source, input_range)
    return Backbone(str(file), extractor, pre, "pretrained", str(file), decision)


def _load_weights_file(model: Any, path: str) -> None:
    try:
        model.load_weights(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load weights {path} into {model.name} "
                         f"({one_line(exc, first=True)}); save them from the same backbone and "
                         "options") from exc


def _load() -> tuple[Any, Any]:
    from edge_transfer.core.keras import load

    return load()


