"""The preprocessing record that travels with every model (numpy + Pillow only).

Training, export checks and the device all call :meth:`Preprocessing.apply`, so
the same pixels reach the model everywhere.

>>> import numpy as np
>>> pre = Preprocessing(height=16, width=16, channels=3, mean=(127.5,), std=(127.5,))
>>> pre.apply(np.zeros((2, 8, 8, 1), np.uint8)).shape
(2, 16, 16, 3)
>>> Preprocessing.from_dict(pre.to_dict()) == pre
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_transfer.core.errors import DataError, ModelError

ChannelOrder = Literal["rgb", "bgr"]
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``height`` x ``width``, convert to ``channels``, then ``(pixel - mean) / std``.

    Pixels come in as 0..255. ``mean`` and ``std`` hold one value for all channels
    or one per channel; ``channel_order="bgr"`` flips RGB to BGR (Caffe-style models).
    """

    height: int
    width: int
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    channel_order: ChannelOrder = "rgb"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ModelError(f"input size {self.height}x{self.width} must be positive")
        if self.channels not in (1, 3):
            raise ModelError(f"channels must be 1 or 3, not {self.channels}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ModelError(f"{name} needs 1 or {self.channels} values, got {len(values)}")
        if any(s == 0 for s in self.std):
            raise ModelError("std must not contain 0")
        if self.channel_order not in ("rgb", "bgr"):
            raise ModelError(f"channel_order must be 'rgb' or 'bgr', not {self.channel_order!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        try:
            return cls(
                height=int(data["height"]),
                width=int(data["width"]),
                channels=int(data["channels"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                channel_order=data.get("channel_order", "rgb"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed preprocessing record ({exc}): {data!r}") from exc

    def save(self, path: Path) -> None:
        """Write the record as JSON, atomically."""
        from edge_transfer.core.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Preprocessing:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read preprocessing record {path}: {exc}") from exc

    def to_pixels(self, images: np.ndarray) -> np.ndarray:
        """Resize and convert channels only: uint8 (N, height, width, channels)."""
        batch = as_uint8_batch(images)
        if batch.shape[1:3] != (self.height, self.width):
            batch = resize_batch(batch, self.height, self.width)
        return convert_channels(batch, self.channels)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """``(pixel - mean) / std`` on pixels already of the model's size: float32."""
        x = pixels.astype(np.float32)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (x - mean) / std

    def apply(self, images: np.ndarray) -> np.ndarray:
        """0..255 images of any size, (N, H, W), (N, H, W, C) -> float32 model input."""
        return self.normalize(self.to_pixels(images))

    def pixels_in(self) -> Preprocessing:
        """The record of a file that applies this preprocessing inside its graph: it takes
        RGB pixels 0..255 as they are (mean 0, std 1, 3 channels), same size.

        >>> pre = Preprocessing(8, 8, channels=1, mean=(127.5,), std=(127.5,)).pixels_in()
        >>> pre.input_shape, pre.mean, pre.std
        ((8, 8, 3), (0.0,), (1.0,))
        """
        return Preprocessing(self.height, self.width, channels=3, mean=(0.0,), std=(1.0,))

    def pixel_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(weights (3, channels), bias (channels,))``: this preprocessing as one linear
        map of RGB pixels 0..255, ``model input = rgb @ weights + bias`` (luma for one
        channel, BGR order and per-channel mean and std included). The in-graph adapter of
        :func:`edge_transfer.train.models.pixel_adapter` is this map.

        >>> pre = Preprocessing(2, 2, channels=1, mean=(127.5,), std=(127.5,))
        >>> weights, bias = pre.pixel_map()
        >>> rgb = np.array([[255.0, 255.0, 255.0], [0.0, 0.0, 0.0]], np.float32)
        >>> np.round(rgb @ weights + bias, 5).ravel().tolist()
        [1.0, -1.0]
        """
        mean = np.broadcast_to(np.asarray(self.mean, np.float64), (self.channels,))
        std = np.broadcast_to(np.asarray(self.std, np.float64), (self.channels,))
        if self.channels == 1:
            mix = _LUMA.astype(np.float64)[:, None]            # RGB -> luma
        else:
            mix = np.eye(3)[:, ::-1] if self.channel_order == "bgr" else np.eye(3)
        return (mix / std).astype(np.float32), (-mean / std).astype(np.float32)

    def rgb_pixels(self, x: np.ndarray) -> np.ndarray:
        """Model input made by :meth:`normalize` -> the RGB pixels 0..255 (float32) that a
        file with this preprocessing inside its graph takes for it (gray repeated to RGB).

        >>> pre = Preprocessing(1, 1, channels=1, mean=(127.5,), std=(127.5,))
        >>> pre.rgb_pixels(pre.normalize(np.full((1, 1, 1, 1), 200, np.uint8))).ravel().tolist()
        [200.0, 200.0, 200.0]
        """
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        pixels = np.clip(np.rint(np.asarray(x, np.float32) * std + mean), 0, 255)
        if self.channel_order == "bgr":
            pixels = pixels[..., ::-1]
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)
        return np.ascontiguousarray(pixels, dtype=np.float32)


def as_uint8_batch(images: np.ndarray) -> np.ndarray:
    """A batch of 0..255 pixels as uint8 (N, H, W, C); floats are rounded, never rescaled."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4:
        raise DataError(
            f"images must be (N, H, W) or (N, H, W, C), got shape {array.shape}; "
            "add a batch axis for a single image"
        )
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
        raise DataError(f"images must be numeric pixels 0..255, got dtype {array.dtype}")
    if array.size and not np.all(np.isfinite(array)):
        raise DataError("images contain NaN or Inf; clean the data before using it")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(
            f"pixel values must lie in 0..255, got {array.min()}..{array.max()}; "
            "scale the images to 0..255 first"
        )
    return np.rint(array).astype(np.uint8)


def resize_batch(batch: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, H, W, C), channel by channel with Pillow."""
    from PIL import Image

    out = np.empty((batch.shape[0], height, width, batch.shape[3]), dtype=np.uint8)
    for i, image in enumerate(batch):
        for c in range(batch.shape[3]):
            plane = Image.fromarray(np.ascontiguousarray(image[..., c]), mode="L")
            out[i, ..., c] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out


def convert_channels(batch: np.ndarray, channels: int) -> np.ndarray:
    """Gray <-> RGB (RGBA loses alpha) on uint8 (N, H, W, C)."""
    have = batch.shape[3]
    if have == 4:
        batch, have = batch[..., :3], 3
    if have == channels:
        return batch
    if have == 1 and channels == 3:
        return np.repeat(batch, 3, axis=3)
    if have == 3 and channels == 1:
        gray = batch.astype(np.float32) @ _LUMA
        return np.rint(gray)[..., np.newaxis].clip(0, 255).astype(np.uint8)
    raise DataError(f"cannot convert images with {have} channels to {channels}")
