"""Specification of funcgrad.mnist: loading real MNIST strictly, and downloading it safely."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from funcgrad.mnist import MNIST_ENV_VAR, MnistError, download_mnist, load_mnist, resolve_mnist_dir

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
CANONICAL_MD5 = {
    TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
    TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
    TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_MEAN_PIXEL = 33.318


def image_idx(count: int, rows: int = 28, cols: int = 28, magic: int = 2051, pixel_bytes: int | None = None) -> bytes:
    size = count * rows * cols if pixel_bytes is None else pixel_bytes
    return struct.pack(">IIII", magic, count, rows, cols) + bytes(i % 256 for i in range(size))


def label_idx(labels: list[int], magic: int = 2049) -> bytes:
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def synthetic_files(train_count: int = 3, test_count: int = 2) -> dict[str, bytes]:
    return {
        TRAIN_IMAGES: image_idx(train_count),
        TRAIN_LABELS: label_idx([i % 10 for i in range(train_count)]),
        TEST_IMAGES: image_idx(test_count),
        TEST_LABELS: label_idx([i % 10 for i in range(test_count)]),
    }


def write_gzipped(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1))
    return directory


def real_content(real_dir: Path, name: str) -> bytes:
    return gzip.decompress((real_dir / f"{name}.gz").read_bytes())


def copy_real_files(real_dir: Path, directory: Path, names: tuple[str, ...] = FILE_NAMES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(real_dir / f"{name}.gz", directory / f"{name}.gz")
    return directory


def with_one_label_changed(content: bytes) -> bytes:
    tampered = bytearray(content)
    tampered[8] = (tampered[8] + 1) % 10  # first label, just past the 8-byte header
    return bytes(tampered)


@pytest.fixture(scope="module")
def real_dir(mnist_dir: str) -> Path:
    """Real MNIST's folder: without one these tests skip, or fail under CI (conftest's mnist_dir)."""
    return Path(mnist_dir)


@pytest.fixture(scope="module")
def mirror_url(real_dir: Path) -> str:
    """Real MNIST's folder as a download mirror."""
    return real_dir.resolve().as_uri() + "/"


@pytest.fixture(scope="module")
def real_dataset(real_dir: Path) -> dict[str, np.ndarray]:
    return load_mnist(real_dir)


@pytest.fixture(scope="module")
def downloaded_dir(tmp_path_factory: pytest.TempPathFactory, mirror_url: str) -> Path:
    return download_mnist(tmp_path_factory.mktemp("downloaded"), base_url=mirror_url)


# --- real data ---------------------------------------------------------------------------------


def test_load_mnist_returns_uint8_splits_of_canonical_shapes(real_dataset):
    assert {name: (array.shape, array.dtype) for name, array in real_dataset.items()} == {
        "train_images": ((60000, 28, 28), np.uint8),
        "train_labels": ((60000,), np.uint8),
        "test_images": ((10000, 28, 28), np.uint8),
        "test_labels": ((10000,), np.uint8),
    }


def test_load_mnist_label_counts_equal_canonical_counts(real_dataset):
    assert np.bincount(real_dataset["train_labels"], minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(real_dataset["test_labels"], minlength=10).tolist() == TEST_LABEL_COUNTS


def test_load_mnist_pixels_span_0_to_255_and_train_mean_is_about_33_3(real_dataset):
    for images in (real_dataset["train_images"], real_dataset["test_images"]):
        assert (images.min(), images.max()) == (0, 255)
    assert abs(real_dataset["train_images"].mean() - TRAIN_MEAN_PIXEL) < 0.1


def test_load_mnist_reads_uncompressed_files_identically(real_dataset, real_dir, tmp_path):
    for name in FILE_NAMES:
        (tmp_path / name).write_bytes(real_content(real_dir, name))
    uncompressed = load_mnist(tmp_path)
    for key, array in real_dataset.items():
        np.testing.assert_array_equal(uncompressed[key], array)


def test_load_mnist_prefers_gz_file_when_both_forms_exist(tmp_path):
    write_gzipped(tmp_path, synthetic_files(train_count=3))
    (tmp_path / TRAIN_IMAGES).write_bytes(b"not an idx file")
    assert load_mnist(tmp_path, verify_checksums=False)["train_images"].shape == (3, 28, 28)


def test_load_mnist_returns_writable_arrays(tmp_path):
    dataset = load_mnist(write_gzipped(tmp_path, synthetic_files()), verify_checksums=False)
    assert all(array.flags.writeable for array in dataset.values())


# --- finding the directory ---------------------------------------------------------------------


def test_load_mnist_uses_env_var_when_no_directory_given(tmp_path, monkeypatch):
    monkeypatch.setenv(MNIST_ENV_VAR, str(write_gzipped(tmp_path, synthetic_files(train_count=4))))
    assert resolve_mnist_dir() == tmp_path
    assert load_mnist(verify_checksums=False)["train_labels"].shape == (4,)


def test_resolve_mnist_dir_without_directory_or_env_var_says_how_to_point_at_data(monkeypatch):
    monkeypatch.delenv(MNIST_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=rf"no MNIST directory given.*`directory`.*{MNIST_ENV_VAR}"):
        resolve_mnist_dir()


def test_load_mnist_missing_directory_names_it_and_says_how_to_get_the_files(tmp_path):
    missing = tmp_path / "nowhere"
    expected = (
        rf"MNIST directory {re.escape(str(missing))} not found.*{TRAIN_IMAGES}.*{TRAIN_LABELS}.*{TEST_IMAGES}"
        rf".*{TEST_LABELS}.*`directory` argument.*{MNIST_ENV_VAR}.*download_mnist\(directory\)"
    )
    with pytest.raises(FileNotFoundError, match=expected):
        load_mnist(missing)


def test_load_mnist_missing_file_names_that_file(tmp_path):
    write_gzipped(tmp_path, synthetic_files())
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    expected = rf"MNIST file\(s\) not found: {re.escape(str(tmp_path / TEST_LABELS))}\.gz \(or {TEST_LABELS}\);"
    with pytest.raises(FileNotFoundError, match=expected + ".*download_mnist"):
        load_mnist(tmp_path)


# --- faults in the files, each named with its numbers ------------------------------------------
# Synthetic files have no canonical md5, so these load with verify_checksums=False, except where a test
# shows that a structural fault is reported ahead of the checksum mismatch the same file also has.


@pytest.mark.parametrize(
    ("name", "content", "fault"),
    [
        (TRAIN_IMAGES, image_idx(3, magic=2049), "bad magic number 2049, expected 2051 for an IDX image file"),
        (TEST_LABELS, label_idx([0, 1], magic=2051), "bad magic number 2051, expected 2049 for an IDX label file"),
    ],
    ids=["image-file", "label-file"],
)
def test_load_mnist_rejects_wrong_magic_number_naming_the_file(tmp_path, name, content, fault):
    write_gzipped(tmp_path, {**synthetic_files(), name: content})
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / name}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


def test_load_mnist_rejects_images_that_are_not_28x28(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(), TEST_IMAGES: image_idx(2, rows=32, cols=32)})
    fault = "wrong dimensions: header says 2 images of 32x32, MNIST images are 28x28"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TEST_IMAGES}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


def test_load_mnist_rejects_truncated_image_file_naming_it_before_checking_its_md5(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(), TRAIN_IMAGES: image_idx(60000, pixel_bytes=1000 - 16)})
    fault = "truncated: header says 60000 images of 28x28 (47040016 bytes), file holds 1000 bytes"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TRAIN_IMAGES}.gz: {fault}")):
        load_mnist(tmp_path)


def test_load_mnist_rejects_file_shorter_than_its_header(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(), TRAIN_LABELS: b"\x00\x00\x08"})
    fault = "truncated: file holds 3 bytes, fewer than the 8-byte IDX label header"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TRAIN_LABELS}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


def test_load_mnist_rejects_trailing_bytes_after_the_labels(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(), TRAIN_LABELS: label_idx([0, 1, 2]) + b"\x00\x00"})
    fault = "2 trailing bytes: header says 3 labels (11 bytes), file holds 13 bytes"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TRAIN_LABELS}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


def test_load_mnist_rejects_checksum_mismatch_after_one_pixel_changed(real_dir, tmp_path):
    copy_real_files(real_dir, tmp_path, (TRAIN_IMAGES, TRAIN_LABELS, TEST_LABELS))
    tampered = bytearray(real_content(real_dir, TEST_IMAGES))
    tampered[16 + 14 * 28 + 14] ^= 0xFF  # the centre pixel of the first image; the header stays valid
    write_gzipped(tmp_path, {TEST_IMAGES: bytes(tampered)})
    actual_md5 = hashlib.md5(tampered).hexdigest()
    fault = f"checksum mismatch: md5 of the decompressed content is {actual_md5}, expected {CANONICAL_MD5[TEST_IMAGES]}"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TEST_IMAGES}.gz: {fault}")):
        load_mnist(tmp_path)


def test_load_mnist_rejects_split_whose_image_and_label_counts_differ(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(test_count=2), TEST_LABELS: label_idx([0, 1, 2])})
    fault = f"count mismatch: holds 2 images but {tmp_path / TEST_LABELS}.gz holds 3 labels"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TEST_IMAGES}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


def test_load_mnist_rejects_label_outside_0_to_9(tmp_path):
    write_gzipped(tmp_path, {**synthetic_files(train_count=3), TRAIN_LABELS: label_idx([0, 10, 9])})
    fault = "label out of range: 1 labels outside 0..9, first is 10 at index 1"
    with pytest.raises(MnistError, match=re.escape(f"{tmp_path / TRAIN_LABELS}.gz: {fault}")):
        load_mnist(tmp_path, verify_checksums=False)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda compressed: b"this is not gzip data", id="not-gzip"),
        pytest.param(lambda compressed: compressed[: len(compressed) // 2], id="cut-short"),
        pytest.param(lambda compressed: compressed[:20] + b"\xff" * 8 + compressed[28:], id="garbled-stream"),
    ],
)
def test_load_mnist_rejects_corrupt_gzip_naming_the_file(tmp_path, corrupt):
    write_gzipped(tmp_path, synthetic_files())
    path = tmp_path / f"{TRAIN_LABELS}.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(MnistError, match=re.escape(f"{path}: corrupt gzip data")):
        load_mnist(tmp_path, verify_checksums=False)


# --- downloading (from a file:// mirror, so nothing touches the network) ------------------------


def test_download_mnist_fetches_the_four_files_that_then_load(downloaded_dir):
    assert sorted(path.name for path in downloaded_dir.iterdir()) == sorted(f"{name}.gz" for name in FILE_NAMES)
    assert np.bincount(load_mnist(downloaded_dir)["test_labels"], minlength=10).tolist() == TEST_LABEL_COUNTS


def test_download_mnist_skips_files_already_present_and_valid(downloaded_dir, mirror_url):
    mtimes_before = {path.name: path.stat().st_mtime_ns for path in downloaded_dir.iterdir()}
    assert download_mnist(downloaded_dir, base_url=mirror_url) == downloaded_dir
    assert {path.name: path.stat().st_mtime_ns for path in downloaded_dir.iterdir()} == mtimes_before


def test_download_mnist_replaces_present_file_that_fails_verification(real_dir, mirror_url, tmp_path):
    copy_real_files(real_dir, tmp_path, (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES))
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(b"stale"))
    download_mnist(tmp_path, base_url=mirror_url)
    assert (tmp_path / f"{TEST_LABELS}.gz").read_bytes() == (real_dir / f"{TEST_LABELS}.gz").read_bytes()


def test_download_mnist_with_overwrite_downloads_again(real_dir, mirror_url, tmp_path):
    copy_real_files(real_dir, tmp_path)
    inodes_before = {name: (tmp_path / f"{name}.gz").stat().st_ino for name in FILE_NAMES}
    download_mnist(tmp_path, base_url=mirror_url, overwrite=True)
    # os.replace puts a new file in place, so each path now points at a different inode.
    assert all((tmp_path / f"{name}.gz").stat().st_ino != inodes_before[name] for name in FILE_NAMES)


def test_download_mnist_rejects_corrupt_mirror_file_leaving_nothing_behind(real_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        (mirror / f"{name}.gz").symlink_to(real_dir.resolve() / f"{name}.gz")
    tampered = with_one_label_changed(real_content(real_dir, TEST_LABELS))
    write_gzipped(mirror, {TEST_LABELS: tampered})
    destination = tmp_path / "destination"
    url = f"{mirror.as_uri()}/{TEST_LABELS}.gz"
    fault = (
        f"checksum mismatch: md5 of the decompressed content is {hashlib.md5(tampered).hexdigest()}, "
        f"expected {CANONICAL_MD5[TEST_LABELS]}"
    )
    with pytest.raises(MnistError, match=re.escape(f"{url}: {fault}")):
        download_mnist(destination, base_url=mirror.as_uri())
    assert sorted(os.listdir(destination)) == sorted(f"{name}.gz" for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES))
