"""Property tests (hypothesis) of the runtime's quantize/dequantize and of Preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_transfer.core.errors import DataError, ModelError
from edge_transfer.core.preprocessing import Preprocessing, as_uint8_batch, convert_channels
from edge_transfer.runtime.backends import TensorInfo

SETTINGS = settings(max_examples=150, deadline=None)
INT_TYPES = [np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)]

# Scales from 1e-30 to 1e30 (normal float32 with room for 65535 steps), both ends included.
scales = st.one_of(
    st.sampled_from([1e-30, 1e-8, 1 / 255, 1.0, 1e8, 1e30]),
    st.floats(1e-30, 1e30, allow_nan=False, allow_infinity=False),
).map(lambda s: float(np.float32(s)))


@st.composite
def tensors(draw: st.DrawFn) -> TensorInfo:
    dtype = draw(st.sampled_from(INT_TYPES))
    info = np.iinfo(dtype)
    edge = st.sampled_from([info.min, info.max, 0 if info.min < 0 else info.min])
    zero_point = draw(st.one_of(edge, st.integers(info.min, info.max)))
    return TensorInfo("t", dtype, scale=float(np.float32(draw(scales))), zero_point=zero_point)


def _range(t: TensorInfo) -> tuple[float, float]:
    info = np.iinfo(t.dtype)
    assert t.scale is not None and t.zero_point is not None
    return (info.min - t.zero_point) * t.scale, (info.max - t.zero_point) * t.scale


@SETTINGS
@given(t=tensors(), data=st.data())
def test_round_trip_within_one_step(t: TensorInfo, data: st.DataObject) -> None:
    low, high = _range(t)
    fractions = data.draw(hnp.arrays(np.float64, st.integers(1, 64),
                                     elements=st.floats(0, 1)))
    x = (low + fractions * (high - low)).astype(np.float32)
    q = t.quantize(x)
    assert q.dtype == t.dtype and q.shape == x.shape
    back = t.dequantize(q)
    assert back.dtype == np.float32
    # Half a step from rounding; float32 arithmetic adds a relative error of a few ulps.
    tolerance = 0.5 * t.scale + 4 * np.finfo(np.float32).eps * np.abs(x.astype(np.float64))
    assert np.all(np.abs(back.astype(np.float64) - x) <= tolerance + t.scale * 1e-6)


@SETTINGS
@given(t=tensors())
def test_every_integer_survives_dequantize_then_quantize(t: TensorInfo) -> None:
    info = np.iinfo(t.dtype)
    q = np.arange(info.min, info.max + 1, dtype=np.int64).astype(t.dtype)
    assert np.array_equal(t.quantize(t.dequantize(q)), q)


@SETTINGS
@given(t=tensors(), data=st.data())
def test_out_of_range_values_clip_to_the_dtype_edges(t: TensorInfo, data: st.DataObject) -> None:
    low, high = _range(t)
    span = high - low
    beyond = data.draw(st.floats(1.0, 1e6))
    x = np.array([low - beyond * span, high + beyond * span, -3e38, 3e38], dtype=np.float32)
    q = t.quantize(x)
    info = np.iinfo(t.dtype)
    assert q.tolist() == [info.min, info.max, info.min, info.max]


@SETTINGS
@given(t=tensors(), data=st.data())
def test_quantize_is_monotone(t: TensorInfo, data: st.DataObject) -> None:
    low, high = _range(t)
    fractions = data.draw(hnp.arrays(np.float64, st.integers(2, 32), elements=st.floats(0, 1)))
    x = np.sort((low + fractions * (high - low)).astype(np.float32))
    assert np.all(np.diff(t.quantize(x).astype(np.int64)) >= 0)


def test_float_tensors_pass_through() -> None:
    t = TensorInfo("t", np.dtype(np.float32))
    x = np.array([np.nan, -np.inf, 1.5], dtype=np.float32)
    assert t.quantize(x) is x and t.dequantize(x) is x


# --------------------------------------------------------------------------- preprocessing


@st.composite
def preprocessings(draw: st.DrawFn) -> Preprocessing:
    channels = draw(st.sampled_from([1, 3]))
    per_channel = draw(st.sampled_from([1, channels]))
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    value = st.floats(-1e4, 1e4).map(f32)
    std = st.one_of(st.floats(1e-3, 1e4), st.floats(-1e4, -1e-3)).map(f32)
    return Preprocessing(
        height=draw(st.integers(1, 12)), width=draw(st.integers(1, 12)), channels=channels,
        mean=tuple(draw(value) for _ in range(per_channel)),
        std=tuple(draw(std) for _ in range(per_channel)),
        channel_order=draw(st.sampled_from(["rgb", "bgr"])),
    )


def images(pre: Preprocessing) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(pre.height),
                                          st.just(pre.width), st.just(pre.channels)))


@SETTINGS
@given(data=st.data())
def test_normalize_inverts_to_the_pixels(data: st.DataObject) -> None:
    pre = data.draw(preprocessings())
    pixels = data.draw(images(pre))
    x = pre.apply(pixels)
    assert x.dtype == np.float32 and x.shape == pixels.shape
    assert np.all(np.isfinite(x))
    restored = x * np.float32(pre.std) + np.float32(pre.mean)
    if pre.channel_order == "bgr":
        restored = restored[..., ::-1]
    assert np.all(np.abs(restored - pixels) <= 0.5), "off by more than half a pixel level"


@SETTINGS
@given(data=st.data())
def test_pixels_of_the_right_size_are_untouched(data: st.DataObject) -> None:
    pre = data.draw(preprocessings())
    pixels = data.draw(images(pre))
    assert np.array_equal(pre.to_pixels(pixels), pixels)
    assert np.array_equal(pre.to_pixels(pixels.astype(np.float64)), pixels)


@SETTINGS
@given(data=st.data())
def test_any_size_and_channels_become_the_model_input(data: st.DataObject) -> None:
    pre = data.draw(preprocessings())
    channels = data.draw(st.sampled_from([None, 1, 3, 4]))
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 20)),
             data.draw(st.integers(1, 20)), *(() if channels is None else (channels,)))
    pixels = data.draw(hnp.arrays(np.uint8, shape))
    x = pre.apply(pixels)
    assert x.shape == (shape[0], *pre.input_shape) and x.dtype == np.float32


@SETTINGS
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 8),
                                      st.integers(1, 8), st.just(1))))
def test_gray_to_rgb_and_back_is_exact(gray: np.ndarray) -> None:
    assert np.array_equal(convert_channels(convert_channels(gray, 3), 1), gray)


@pytest.mark.parametrize("bad", [
    np.full((1, 2, 2), np.nan), np.full((1, 2, 2), np.inf), np.full((1, 2, 2), -1.0),
    np.full((1, 2, 2), 255.6), np.zeros((2, 2)), np.array([[["a"]]], dtype=object),
])
def test_pixels_outside_0_255_or_not_numbers_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(DataError):
        as_uint8_batch(bad)


@pytest.mark.parametrize("fields", [
    {"height": 0, "width": 8}, {"height": 8, "width": 8, "channels": 2},
    {"height": 8, "width": 8, "std": (0.0,)}, {"height": 8, "width": 8, "mean": (1.0, 2.0)},
])
def test_impossible_preprocessing_is_refused(fields: dict) -> None:
    with pytest.raises(ModelError):
        Preprocessing(**fields)


@dataclass
class _InputOnly:
    """The one thing ``EdgeModel.prepare`` reads from a backend: its input tensor."""

    input: TensorInfo
    runtime: str = "none"
    output: TensorInfo | None = None


@SETTINGS
@given(data=st.data())
def test_prepare_lookup_equals_quantize_of_apply(data: st.DataObject) -> None:
    """The runtime's per-pixel lookup table is exactly ``quantize(apply(images))``."""
    from edge_transfer.runtime.metadata import ModelMetadata
    from edge_transfer.runtime.model import EdgeModel

    pre = data.draw(preprocessings())
    tensor = data.draw(st.one_of(tensors(), st.just(TensorInfo("t", np.dtype(np.float32)))))
    labels = ("a", "b")
    model = EdgeModel(Path("m.tflite"), _InputOnly(tensor),  # type: ignore[arg-type]
                      ModelMetadata(labels, pre))
    pixels = data.draw(images(pre))
    expected = tensor.quantize(pre.apply(pixels))
    np.testing.assert_array_equal(model.prepare(pixels), expected)
