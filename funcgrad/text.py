"""Text for a character-level language model: a file read (or tinyshakespeare fetched, or
the shipped excerpt), its characters as tokens, nanoGPT's split and its random batches.

    >>> text = fg.load_text("../shared/data/tinyshakespeare/input.txt")   # or $FUNCGRAD_TEXT
    >>> vocabulary = fg.char_vocabulary(text)          # sorted distinct characters (prepare.py's)
    >>> train, val = fg.split_train_val(fg.encode(text, vocabulary))     # first 90 %, last 10 %
    >>> x, y = fg.char_batch(train, fg.char_batch_offsets(key, len(train), 64, 16), 64)
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad._download import cache_dir, download_verified

TEXT_ENV_VAR = "FUNCGRAD_TEXT"
TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"
TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char/prepare.py

_PathArg = Union[str, "os.PathLike[str]"]


class TextDataError(ValueError):
    """A text file that cannot serve as a corpus (not UTF-8, empty), or a download whose sum is wrong."""


def load_text(path: _PathArg | None = None) -> str:
    """The UTF-8 text of ``path``, else of the file ``$FUNCGRAD_TEXT`` names.

    >>> text = load_text("../shared/data/tinyshakespeare/input.txt")
    """
    named = path if path is not None else os.environ.get(TEXT_ENV_VAR) or None
    if named is None:
        raise FileNotFoundError(f"load_text: no text file named: pass path= or set ${TEXT_ENV_VAR}; when online, "
                                f"download_tinyshakespeare(folder) fetches tinyshakespeare; "
                                f"shakespeare_excerpt() is the shipped stand-in")
    file = Path(named).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"load_text: path: {file} is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TextDataError(f"load_text: {file} is not UTF-8 text ({error})") from None
    if not text:
        raise TextDataError(f"load_text: {file} is empty")
    return text


def shakespeare_excerpt() -> str:
    """The stand-in shipped with funcgrad: tinyshakespeare's first 1 873 lines (49 980
    characters), for a run on a machine without the file.

    >>> len(shakespeare_excerpt())
    49980
    """
    return resources.files("funcgrad").joinpath("data_files/shakespeare_excerpt.txt").read_text(encoding="utf-8")


def text_cache_dir() -> Path:
    """Where ``python -m compare --download`` keeps tinyshakespeare: ``$XDG_CACHE_HOME/funcgrad/tinyshakespeare``."""
    return cache_dir("tinyshakespeare")


def download_tinyshakespeare(directory: _PathArg, *, url: str = TINYSHAKESPEARE_URL, overwrite: bool = False) -> Path:
    """Fetch tinyshakespeare's ``input.txt`` into ``directory``, md5-checked; return the file.

    >>> text = load_text(download_tinyshakespeare("~/data/tinyshakespeare"))
    """
    root = Path(directory).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    destination = root / "input.txt"
    if overwrite or not (destination.is_file() and _md5(destination) == TINYSHAKESPEARE_MD5):
        download_verified(url, destination, TINYSHAKESPEARE_MD5, _md5, TextDataError)
    return destination


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def char_vocabulary(text: str) -> str:
    """The distinct characters of ``text``, sorted: character ``i`` is token ``i``.

    >>> char_vocabulary("banana")
    'abn'
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"char_vocabulary: text must be a non-empty str, got {type(text).__name__} "
                         f"{'(empty)' if text == '' else ''}".rstrip())
    return "".join(sorted(set(text)))


def encode(text: str, vocabulary: str) -> np.ndarray:
    """``text`` as int64 token ids in ``vocabulary``; a character outside it is refused by name.

    >>> encode("nab", "abn")
    array([2, 0, 1])
    """
    index = {char: i for i, char in enumerate(vocabulary)}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise ValueError(f"encode: text has characters outside the vocabulary: {''.join(unknown)!r}")
    return np.fromiter((index[char] for char in text), np.int64, len(text))


def decode(ids, vocabulary: str) -> str:
    """Token ids back to text.

    >>> decode([2, 0, 1], "abn")
    'nab'
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(vocabulary)):
        raise ValueError(f"decode: ids must lie in [0, {len(vocabulary)}), got {ids.min()}..{ids.max()}")
    return "".join(vocabulary[i] for i in ids.tolist())


def split_train_val(ids: np.ndarray, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """The first ``int(train_fraction * len(ids))`` tokens to train, the rest to validate.

    >>> train, val = split_train_val(np.arange(10))
    >>> len(train), len(val)
    (9, 1)
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"split_train_val: train_fraction must lie in (0, 1), got {train_fraction}")
    cut = int(train_fraction * len(ids))
    return ids[:cut], ids[cut:]


def char_batch_offsets(key: jax.Array, length: int, block_size: int, batch_size: int) -> np.ndarray:
    """``batch_size`` random starts in ``[0, length - block_size)``, as nanoGPT's ``get_batch``
    draws them with ``torch.randint(len(data) - block_size, (batch_size,))``, here from ``key``,
    as int32 draws whether JAX's 64-bit mode is on or not (the same key, the same windows).

    >>> offsets = char_batch_offsets(jax.random.key(0), 1000, 64, 16)
    """
    if length <= block_size:
        raise ValueError(f"char_batch_offsets: the text must be longer than block_size ({block_size} tokens), "
                         f"got {length} tokens")
    if length - block_size > np.iinfo(np.int32).max:
        raise ValueError(f"char_batch_offsets: at most {np.iinfo(np.int32).max} starts, got {length - block_size}")
    return np.asarray(jax.random.randint(key, (batch_size,), 0, length - block_size, dtype=jnp.int32), np.int64)


def char_batch(ids: np.ndarray, offsets, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``ids[i:i + block_size]`` and targets one token on, for each offset: ``(B, T)`` each.

    >>> x, y = char_batch(np.arange(10), [0, 3], 4)
    >>> x[1], y[1]
    (array([3, 4, 5, 6]), array([4, 5, 6, 7]))
    """
    offsets = np.asarray(offsets)
    if offsets.size and (offsets.min() < 0 or offsets.max() + block_size >= len(ids)):
        raise ValueError(f"char_batch: offsets must lie in [0, {len(ids) - block_size}) for block_size {block_size}")
    window = offsets[:, None] + np.arange(block_size)
    return ids[window], ids[window + 1]
