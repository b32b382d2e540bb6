"""Read the MNIST handwritten digits from the four standard IDX files, and fetch them.

Usage:
    >>> data = load_mnist("~/data/mnist")  # or set FUNCGRAD_MNIST_DIR and call load_mnist()
    >>> data["train_images"].shape, data["train_labels"].shape
    ((60000, 28, 28), (60000,))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

from funcgrad._download import cache_dir, download_verified

MNIST_ENV_VAR = "FUNCGRAD_MNIST_DIR"
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror torchvision uses

_PathArg = Union[str, "os.PathLike[str]"]

# IDX magic numbers: 0x08 (unsigned byte) in the third byte, the number of dimensions in the fourth.
_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049
_IMAGE_HEADER = struct.Struct(">IIII")  # magic, count, rows, cols
_LABEL_HEADER = struct.Struct(">II")  # magic, count
_IMAGE_SIDE = 28
_NUM_CLASSES = 10
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class _SplitFiles(NamedTuple):
    images: str
    labels: str


_SPLITS = {
    "train": _SplitFiles("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": _SplitFiles("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# md5 of the decompressed files: the sums torchvision and other loaders check.
_CANONICAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class MnistError(ValueError):
    """A fault in the content of an MNIST file; the message names the file and the fault.

    Usage:
        try:
            data = load_mnist(directory)
        except MnistError as error:
            print(error)  # ".../train-images-idx3-ubyte.gz: truncated: header says 60000 images ..."
    """


def resolve_mnist_dir(directory: _PathArg | None = None) -> Path:
    """Return the MNIST directory: `directory` if given, else the FUNCGRAD_MNIST_DIR variable.

    Usage:
        >>> resolve_mnist_dir("../shared/data/mnist")
        PosixPath('../shared/data/mnist')
    """
    if directory is None:
        # An empty variable counts as unset, so `FUNCGRAD_MNIST_DIR= cmd` does not mean the cwd.
        directory = os.environ.get(MNIST_ENV_VAR) or None
    if directory is None:
        raise FileNotFoundError(f"no MNIST directory given; {_how_to_provide_the_files()}")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"MNIST directory {path} not found; {_how_to_provide_the_files()}")
    return path


def mnist_cache_dir() -> Path:
    """Where ``python -m compare --download`` keeps MNIST: ``$XDG_CACHE_HOME/funcgrad/mnist``
    (``~/.cache/funcgrad/mnist`` when the variable is unset).

    Usage:
        >>> download_mnist(mnist_cache_dir())
    """
    return cache_dir("mnist")


def load_mnist(directory: _PathArg | None = None, *, verify_checksums: bool = True) -> dict[str, np.ndarray]:
    """Load and validate the four MNIST files; arrays are uint8, images (N, 28, 28), labels (N,).

    Usage:
        >>> data = load_mnist("../shared/data/mnist")
        >>> data["test_images"].shape, data["test_labels"].dtype
        ((10000, 28, 28), dtype('uint8'))
    """
    root = resolve_mnist_dir(directory)
    paths = _locate_files(root)
    dataset: dict[str, np.ndarray] = {}
    for split, files in _SPLITS.items():
        images_path, labels_path = paths[files.images], paths[files.labels]
        images = _parse_images(images_path, _read_content(images_path), verify_checksums)
        labels = _parse_labels(labels_path, _read_content(labels_path), verify_checksums)
        _check_counts_agree(images_path, len(images), labels_path, len(labels))
        _check_labels_in_range(labels_path, labels)
        dataset[f"{split}_images"] = images
        dataset[f"{split}_labels"] = labels
    return dataset


def download_mnist(directory: _PathArg, *, base_url: str = DEFAULT_MIRROR, overwrite: bool = False) -> Path:
    """Download the four gzip-compressed MNIST files into `directory`, checking each md5; return it.

    Usage:
        >>> directory = download_mnist("~/data/mnist")
        >>> data = load_mnist(directory)
    """
    root = Path(directory).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for name, expected_md5 in _CANONICAL_MD5.items():
        destination = root / f"{name}.gz"
        if not overwrite and _holds_canonical_content(destination, expected_md5):
            continue
        _download_verified(f"{base_url.rstrip('/')}/{name}.gz", destination, expected_md5)
    return root


def _how_to_provide_the_files() -> str:
    return (
        f"expected the four MNIST files {', '.join(_CANONICAL_MD5)} (each as NAME.gz or uncompressed NAME); "
        f"point at their directory with the `directory` argument or the {MNIST_ENV_VAR} environment variable; "
        "when online, download_mnist(directory) fetches them"
    )


def _locate_files(root: Path) -> dict[str, Path]:
    # Every file is located before any is read, so one error lists everything that is missing.
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in _CANONICAL_MD5:
        compressed, plain = root / f"{name}.gz", root / name
        if compressed.is_file():
            found[name] = compressed
        elif plain.is_file():
            found[name] = plain
        else:
            missing.append(f"{compressed} (or {plain.name})")
    if missing:
        raise FileNotFoundError(f"MNIST file(s) not found: {'; '.join(missing)}; {_how_to_provide_the_files()}")
    return found


def _read_content(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except _GZIP_ERRORS as error:
        raise MnistError(f"{path}: corrupt gzip data ({error})") from error


def _canonical_name(path: Path) -> str:
    return path.name.removesuffix(".gz")


def _unpack_header(path: Path, content: bytes, header: struct.Struct, kind: str) -> tuple[int, ...]:
    if len(content) < header.size:
        raise MnistError(
            f"{path}: truncated: file holds {len(content)} bytes, fewer than the {header.size}-byte IDX {kind} header"
        )
    return header.unpack_from(content)


def _check_magic(path: Path, magic: int, expected: int, kind: str) -> None:
    if magic != expected:
        raise MnistError(f"{path}: bad magic number {magic}, expected {expected} for an IDX {kind} file")


def _check_length(path: Path, content: bytes, expected: int, header_claim: str) -> None:
    actual = len(content)
    if actual < expected:
        fault = "truncated"
    elif actual > expected:
        fault = f"{actual - expected} trailing bytes"
    else:
        return
    raise MnistError(f"{path}: {fault}: header says {header_claim} ({expected} bytes), file holds {actual} bytes")


def _check_md5(path: Path, content: bytes) -> None:
    expected = _CANONICAL_MD5[_canonical_name(path)]
    actual = hashlib.md5(content).hexdigest()
    if actual != expected:
        raise MnistError(
            f"{path}: checksum mismatch: md5 of the decompressed content is {actual}, expected {expected} "
            "(pass verify_checksums=False to load a deliberately modified copy)"
        )


def _parse_images(path: Path, content: bytes, verify_checksums: bool) -> np.ndarray:
    magic, count, rows, cols = _unpack_header(path, content, _IMAGE_HEADER, "image")
    _check_magic(path, magic, _IMAGE_MAGIC, "image")
    if (rows, cols) != (_IMAGE_SIDE, _IMAGE_SIDE):
        raise MnistError(
            f"{path}: wrong dimensions: header says {count} images of {rows}x{cols}, MNIST images are 28x28"
        )
    _check_length(path, content, _IMAGE_HEADER.size + count * rows * cols, f"{count} images of {rows}x{cols}")
    if verify_checksums:
        _check_md5(path, content)
    # The copy makes the array writable (frombuffer over bytes is read-only), so in-place shuffles work.
    return np.frombuffer(content, dtype=np.uint8, offset=_IMAGE_HEADER.size).reshape(count, rows, cols).copy()


def _parse_labels(path: Path, content: bytes, verify_checksums: bool) -> np.ndarray:
    magic, count = _unpack_header(path, content, _LABEL_HEADER, "label")
    _check_magic(path, magic, _LABEL_MAGIC, "label")
    _check_length(path, content, _LABEL_HEADER.size + count, f"{count} labels")
    if verify_checksums:
        _check_md5(path, content)
    return np.frombuffer(content, dtype=np.uint8, offset=_LABEL_HEADER.size).copy()


def _check_counts_agree(images_path: Path, image_count: int, labels_path: Path, label_count: int) -> None:
    if image_count != label_count:
        raise MnistError(
            f"{images_path}: count mismatch: holds {image_count} images but {labels_path} holds {label_count} labels"
        )


def _check_labels_in_range(path: Path, labels: np.ndarray) -> None:
    out_of_range = np.flatnonzero(labels >= _NUM_CLASSES)
    if out_of_range.size:
        first = int(out_of_range[0])
        raise MnistError(
            f"{path}: label out of range: {out_of_range.size} labels outside 0..{_NUM_CLASSES - 1}, "
            f"first is {labels[first]} at index {first}"
        )


def _decompressed_md5(path: Path) -> str:
    return hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


def _holds_canonical_content(path: Path, expected_md5: str) -> bool:
    if not path.is_file():
        return False
    try:
        return _decompressed_md5(path) == expected_md5
    except _GZIP_ERRORS:
        return False


def _download_verified(url: str, destination: Path, expected_md5: str) -> None:
    def decompressed_md5(path: Path) -> str:
        try:
            return _decompressed_md5(path)
        except _GZIP_ERRORS as error:
            raise MnistError(f"{url}: corrupt gzip data ({error})") from error

    download_verified(url, destination, expected_md5, decompressed_md5, MnistError, "the decompressed content")
