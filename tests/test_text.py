"""funcgrad.text: a corpus read strictly, fetched with its checksum, tokenised as nanoGPT's
shakespeare_char/prepare.py does, split and batched as its get_batch does."""

import hashlib
import os
from pathlib import Path

import jax
import numpy as np
import pytest

import funcgrad as fg
from funcgrad import text as fg_text



def test_the_excerpt_is_the_start_of_tinyshakespeare():
    excerpt = fg.shakespeare_excerpt()
    assert len(excerpt) == 49980 and excerpt.startswith("First Citizen:\nBefore we proceed any further")
    named = os.environ.get(fg.TEXT_ENV_VAR)
    if named and Path(named).is_file():
        assert Path(named).read_text().startswith(excerpt)


def test_tinyshakespeare_has_nanogpts_vocabulary_and_split(text_file):
    text = fg.load_text(text_file)
    assert hashlib.md5(text.encode()).hexdigest() == fg_text.TINYSHAKESPEARE_MD5
    vocabulary = fg.char_vocabulary(text)
    assert len(vocabulary) == 65 and vocabulary[:2] == "\n "
    train, val = fg.split_train_val(fg.encode(text, vocabulary))
    assert (len(train), len(val)) == (1003854, 111540)  # prepare.py prints these
    assert fg.decode(train[:14], vocabulary) == "First Citizen:"


def test_load_text_reads_the_named_file_else_the_environment_variable(tmp_path, monkeypatch):
    file = tmp_path / "corpus.txt"
    file.write_text("to be or not")
    assert fg.load_text(file) == "to be or not"
    monkeypatch.setenv(fg.TEXT_ENV_VAR, str(file))
    assert fg.load_text() == "to be or not"
    monkeypatch.delenv(fg.TEXT_ENV_VAR)
    with pytest.raises(FileNotFoundError, match=r"no text file named: pass path= or set \$FUNCGRAD_TEXT"):
        fg.load_text()


@pytest.mark.parametrize("content, error, message", [
    (None, FileNotFoundError, "is not a file"),
    (b"", fg.TextDataError, "is empty"),
    (b"\xff\xfe caf\xe9", fg.TextDataError, "is not UTF-8 text"),
])
def test_a_file_that_is_no_corpus_is_refused_naming_it(tmp_path, content, error, message):
    file = tmp_path / "corpus.txt"
    if content is not None:
        file.write_bytes(content)
    with pytest.raises(error, match=message):
        fg.load_text(file)


def test_download_checks_the_sum_before_the_file_takes_its_name(tmp_path):
    source = tmp_path / "served.txt"
    source.write_text("not shakespeare")
    with pytest.raises(fg.TextDataError, match="checksum mismatch: md5 of the content is"):
        fg.download_tinyshakespeare(tmp_path / "cache", url=source.as_uri())
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file left


def test_download_keeps_a_file_whose_sum_is_right_and_fetches_it_when_served(tmp_path, text_file):
    fetched = fg.download_tinyshakespeare(tmp_path, url=text_file.resolve().as_uri())
    assert fetched == tmp_path / "input.txt" and fetched.read_bytes() == text_file.read_bytes()
    assert oct(os.stat(fetched).st_mode & 0o777) == "0o644"
    assert fg.download_tinyshakespeare(tmp_path, url="file:///nowhere/input.txt") == fetched  # not fetched again


def test_tokens_round_trip_and_an_unknown_character_is_named():
    vocabulary = fg.char_vocabulary("hello, world")
    assert vocabulary == " ,dehlorw"
    ids = fg.encode("hello, world", vocabulary)
    assert ids.dtype == np.int64 and fg.decode(ids, vocabulary) == "hello, world"
    with pytest.raises(ValueError, match=r"outside the vocabulary: '!'"):
        fg.encode("hello!", vocabulary)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 9\), got 0..9"):
        fg.decode([0, 9], vocabulary)


def test_batches_are_windows_and_their_next_tokens_within_the_text():
    ids = np.arange(100)
    offsets = fg.char_batch_offsets(jax.random.key(0), len(ids), 8, 32)
    assert offsets.shape == (32,) and offsets.min() >= 0 and offsets.max() < 92
    x, y = fg.char_batch(ids, offsets, 8)
    assert x.shape == y.shape == (32, 8)
    np.testing.assert_array_equal(x, offsets[:, None] + np.arange(8))
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match=r"longer than block_size \(8 tokens\), got 8 tokens"):
        fg.char_batch_offsets(jax.random.key(0), 8, 8, 4)
    with pytest.raises(ValueError, match=r"offsets must lie in \[0, 92\)"):
        fg.char_batch(ids, [92], 8)


def test_the_same_key_gives_the_same_windows_with_64_bit_mode_on_or_off():
    key = jax.random.key(7)
    with jax.enable_x64(False):
        off = fg.char_batch_offsets(key, 100000, 64, 16)
    with jax.enable_x64(True):
        on = fg.char_batch_offsets(key, 100000, 64, 16)
    np.testing.assert_array_equal(off, on)


def test_split_refuses_a_fraction_outside_zero_and_one():
    with pytest.raises(ValueError, match=r"train_fraction must lie in \(0, 1\), got 1.5"):
        fg.split_train_val(np.arange(10), 1.5)
