"""The dataset type every source returns (:class:`Dataset`: images read lazily, labels, class
names, an optional fixed split), its splits (``split_dataset``, ``stratified_sample``), class
selection, and the built-in datasets (digits, Fashion-MNIST, IDX folders). The ``.npz`` reader
is :mod:`edge_transfer.data.npz_file`, image files and folders
:mod:`edge_transfer.data.image_files`; loading a data spec is
:func:`edge_transfer.data.load.load_dataset`.

>>> from edge_transfer.data.load import load_dataset
>>> splits = split_dataset(load_dataset("digits:5-9"), seed=0, shots=10)
>>> len(splits.train), len(splits.train.class_names)
(50, 5)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.preprocessing import as_uint8_batch, convert_channels
from edge_transfer.data.images import Images, concat

DIGITS_PREFIX = "digits"
FASHION_PREFIX = "fashion-mnist"
TRAIN, VAL, TEST = 0, 1, 2     # values of Dataset.split_of
UNION = " + "                  # "A + B": A's classes, then B's (what `extend` trains on)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 (N, H, W, C) pixels 0..255 (a lazy :class:`Images` stack; an array
    given here is wrapped), integer labels, and class names.

    ``split_of`` marks pre-split data (per image: 0 train, 1 val, 2 test); ``source_digest``
    is the sha256 of the stored bytes the images come from (None: the pixels are hashed).
    """

    x: Images
    y: np.ndarray
    class_names: tuple[str, ...]
    split_of: np.ndarray | None = None
    source_digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, Images):
            object.__setattr__(self, "x", Images.of(as_uint8_batch(np.asarray(self.x))))
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> Dataset:
        split_of = None if self.split_of is None else self.split_of[index]
        return replace(self, x=self.x[index], y=self.y[index], split_of=split_of)

    def fingerprint(self) -> str:
        """A short sha256: of the stored bytes (names, sizes, contents) and which images were
        taken, or of the pixels; plus labels and class names. Same data, same fingerprint."""
        if self.source_digest is None:
            digest = self.x.pixel_digest()
        else:
            digest = hashlib.sha256(self.source_digest.encode())
            digest.update(np.ascontiguousarray(self.x.positions.astype(np.int64)).tobytes())
        digest.update(np.ascontiguousarray(self.y.astype(np.int64)).tobytes())
        digest.update("\n".join(self.class_names).encode())
        if self.split_of is not None:
            digest.update(b"split:" + np.ascontiguousarray(self.split_of, np.int8).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset

    def get(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)


def _as_split(other: Dataset, main: Dataset, split: int, spec: str) -> Dataset:
    """``other``'s images as split ``split`` of ``main``, labels renumbered by class name."""
    unknown = [n for n in other.class_names if n not in main.class_names]
    if unknown:
        raise DataError(f"{spec} has classes {unknown} that the training data lacks; the "
                        f"training classes are {', '.join(main.class_names)}")
    remap = np.asarray([main.class_names.index(n) for n in other.class_names], np.int64)
    return Dataset(other.x, remap[other.y], main.class_names,
                   np.full(len(other), split, np.int8), other.source_digest or
                   other.fingerprint())


def _join(parts: list[Dataset], what: str) -> Dataset:
    channels = max(p.x.image_shape[2] for p in parts)
    stacks = [_with_channels(p.x, channels) for p in parts]
    if len({s.image_shape for s in stacks}) != 1:
        raise DataError(f"{what}: the splits' images differ in size "
                        f"({sorted({s.image_shape for s in stacks})}); give --input-size")
    split_of = np.concatenate([p.split_of if p.split_of is not None
                               else np.zeros(len(p), np.int8) for p in parts]).astype(np.int8)
    digests = [p.source_digest or p.fingerprint() for p in parts]
    return Dataset(concat(stacks), np.concatenate([p.y for p in parts]), parts[0].class_names,
                   split_of, hashlib.sha256(":".join(digests).encode()).hexdigest())


def _with_channels(images: Images, channels: int) -> Images:
    if images.image_shape[2] == channels:
        return images

    def reader(positions: np.ndarray) -> np.ndarray:
        return convert_channels(images.read(positions), channels)

    return Images(reader, np.arange(len(images)), (*images.image_shape[:2], channels))


def parse_class_selection(text: str, known: Sequence[str]) -> list[str]:
    """``"5-9"`` / ``"0,2,4"`` / ``"0-2,7"`` -> class names, in the order given. Numbers are
    class indices when the class names are not numbers themselves (Fashion-MNIST).

    >>> parse_class_selection("1-2", ["cat", "dog", "emu"])
    ['dog', 'emu']
    """
    by_index = not all(name.isdigit() for name in known)
    selected: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part and not (by_index and part in known):
            low, _, high = part.partition("-")
            if not (low.isdigit() and high.isdigit()):
                raise DataError(f"bad class range {part!r}; write it like 5-9")
            if int(low) > int(high):
                raise DataError(f"{part} is a reversed range; write {high}-{low}")
            selected += [str(i) for i in range(int(low), int(high) + 1)]
        else:
            selected.append(part)
    if by_index:
        selected = [known[int(s)] if s.isdigit() and int(s) < len(known) else s
                    for s in selected]
    unknown = [name for name in selected if name not in known]
    if unknown:
        raise DataError(f"unknown classes {unknown}; the classes are {', '.join(known)}")
    if len(set(selected)) != len(selected):
        raise DataError(f"classes repeated in {text!r}; name each class once")
    return selected


def load_digits(spec: str = DIGITS_PREFIX) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 gray, optionally a class selection."""
    source = resources.files("edge_transfer").joinpath("datasets/digits.npz")
    with source.open("rb") as f, np.load(f, allow_pickle=False) as data:
        x, y = data["x"][..., np.newaxis], data["y"]
    all_names = [str(i) for i in range(10)]
    _, _, selection = spec.partition(":")
    names = parse_class_selection(selection, all_names) if selection else all_names
    return select_classes(Dataset(x, y, tuple(all_names)), names, f"digits:{selection}")


def load_fashion_mnist(spec: str = FASHION_PREFIX) -> Dataset:
    """Fashion-MNIST (60,000 train + 10,000 test, 28x28 gray), optionally a class selection
    by index (``fashion-mnist:5-9``); the official test set is the test split."""
    from edge_transfer.data import fashion_mnist

    dataset = load_idx_folder(fashion_mnist.locate(), fashion_mnist.CLASS_NAMES)
    _, _, selection = spec.partition(":")
    if not selection:
        return dataset
    names = parse_class_selection(selection, dataset.class_names)
    return select_classes(dataset, names, spec)


def load_idx_folder(folder: Path, class_names: Sequence[str] | None = None) -> Dataset:
    """The IDX files of a folder (memory-mapped); t10k, when present, is the test split."""
    from edge_transfer.data import idx

    pairs = idx.read_folder(folder)
    y = np.concatenate([p.labels for p in pairs])
    count = int(y.max()) + 1 if len(y) else 0
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(count))
    if count > len(names):
        raise DataError(f"{folder}: labels go up to {count - 1} but the dataset has "
                        f"{len(names)} classes")
    split_of = np.concatenate([np.full(len(p.labels), TEST if p.split == "test" else TRAIN,
                                       np.int8) for p in pairs])
    digest = hashlib.sha256(":".join(p.digest for p in pairs).encode()).hexdigest()
    x = concat([Images.of(p.images) for p in pairs])
    dataset = Dataset(x, y, names, split_of if TEST in split_of else None, digest)
    return checked(dataset, str(folder))


def select_classes(dataset: Dataset, names: Sequence[str], what: str) -> Dataset:
    """Keep the named classes, renumbered 0..k-1 in the order given."""
    if len(names) < 2:
        raise DataError(f"{what} selects {len(names)} class; a classifier needs at least 2")
    old_index = [dataset.class_names.index(n) for n in names]
    keep = np.flatnonzero(np.isin(dataset.y, old_index))
    remap = np.full(max(dataset.num_classes, 1), -1, dtype=np.int64)
    remap[old_index] = np.arange(len(names))
    kept = dataset.subset(keep)
    return replace(kept, y=remap[kept.y], class_names=tuple(names))


def checked(dataset: Dataset, what: str) -> Dataset:
    """Refuse datasets that cannot train a classifier: fewer than 2 classes with images."""
    present = np.unique(dataset.y)
    if len(present) < 2:
        raise DataError(f"{what} has images of {len(present)} class; a classifier needs >= 2")
    return dataset


def split_dataset(
    dataset: Dataset,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    shots: int | None = None,
) -> Splits:
    """Stratified train/val/test split by seed; ``shots`` keeps K training images per class.
    Pre-split data keeps its splits; without a val split, ``val_fraction`` of each class's
    training images is set aside for validation."""
    _check_split_options(val_fraction, test_fraction, shots)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(dataset.num_classes):
        if dataset.split_of is None:
            train, val, test = _split_class(dataset, label, rng, val_fraction, test_fraction)
        else:
            train, val, test = _split_marked_class(dataset, label, rng, val_fraction,
                                                   test_fraction)
        name = dataset.class_names[label]
        if len(train) == 0:
            raise DataError(f"class {name!r} has no training images; "
                            "add some, or leave the class out")
        parts["test"].append(test)
        parts["val"].append(val)
        parts["train"].append(_shots(train, shots, name))
    subsets = {name: dataset.subset(np.sort(np.concatenate(idx)).astype(np.int64))
               for name, idx in parts.items()}
    for name, subset in subsets.items():
        if len(subset) == 0:
            raise DataError(f"the {name} split of the data is empty; give it images")
    return Splits(**subsets)


def _check_split_options(val_fraction: float, test_fraction: float, shots: int | None) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError("val and test fractions must be in (0, 1) and sum to less than 1")
    if shots is not None and shots < 1:
        raise DataError(f"--shots must be at least 1, got {shots}")


def _split_class(dataset: Dataset, label: int, rng: np.random.Generator, val_fraction: float,
                 test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of one class of data that is not pre-split."""
    index = rng.permutation(np.flatnonzero(dataset.y == label))
    if len(index) < 3:
        raise DataError(
            f"class {dataset.class_names[label]!r} has {len(index)} image(s); "
            "each class needs at least 3 (train, val, test)"
        )
    n_test = max(1, round(len(index) * test_fraction))
    n_val = max(1, round(len(index) * val_fraction))
    return index[n_test + n_val:], index[n_test:n_test + n_val], index[:n_test]


def _split_marked_class(dataset: Dataset, label: int, rng: np.random.Generator,
                        val_fraction: float,
                        test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of one class of pre-split data: its given splits; a split
    not given comes out of its training images."""
    marks = dataset.split_of
    assert marks is not None
    of_class = dataset.y == label
    test = np.flatnonzero(of_class & (marks == TEST))
    pool = rng.permutation(np.flatnonzero(of_class & (marks == TRAIN)))
    if not np.any(marks == TEST):  # train/ and val/ only: the test split comes out of train
        n_test = max(1, round(len(pool) * test_fraction)) if len(pool) > 2 else 0
        test, pool = pool[:n_test], pool[n_test:]
    if np.any(marks == VAL):
        return pool, np.flatnonzero(of_class & (marks == VAL)), test
    if len(pool) < 2:
        raise DataError(
            f"class {dataset.class_names[label]!r} has {len(pool)} training "
            "image(s); it needs at least 2 (train, val)")
    n_val = max(1, round(len(pool) * val_fraction))
    return pool[n_val:], pool[:n_val], test


def _shots(train: np.ndarray, shots: int | None, name: str) -> np.ndarray:
    """The first ``shots`` training indices of a class (all when None)."""
    if shots is None:
        return train
    if shots > len(train):
        raise DataError(
            f"--shots {shots} is more than class {name!r} has "
            f"for training ({len(train)}); use --shots {len(train)} or fewer"
        )
    return train[:shots]


def stratified_sample(dataset: Dataset, count: int, seed: int = 0) -> Dataset:
    """``count`` images, each class in its share (at least one each, so more only when
    ``count`` is below the number of classes), seeded; the whole dataset when it is no
    larger.

    >>> from edge_transfer.data.load import load_dataset
    >>> part = stratified_sample(load_dataset("digits:0-1"), 20)
    >>> len(part), np.bincount(part.y).tolist()
    (20, [10, 10])
    >>> len(stratified_sample(load_dataset("digits"), 64)), len(stratified_sample(
    ...     load_dataset("digits"), 99))
    (64, 99)
    """
    if len(dataset) <= count:
        return dataset
    rng = np.random.default_rng(seed)
    labels, sizes = np.unique(dataset.y, return_counts=True)
    exact = count * sizes / len(dataset)
    shares = np.maximum(1, np.floor(exact)).astype(int)
    left = count - int(shares.sum())          # largest remainders first, so the total is
    if left > 0:                              # ``count`` (more only with more classes)
        shares[np.argsort(-(exact - np.floor(exact)), kind="stable")[:left]] += 1
    keep = [rng.permutation(np.flatnonzero(dataset.y == label))[:share]
            for label, share in zip(labels, shares, strict=True)]
    return dataset.subset(np.sort(np.concatenate(keep)))
