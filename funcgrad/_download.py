"""One file fetched and checked before it takes its name: the downloaders' shared step."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

DOWNLOAD_TIMEOUT_S = 60.0


def download_verified(url: str, destination: Path, expected_md5: str, md5_of: Callable[[Path], str],
                      error: type[Exception], content: str = "the content") -> None:
    """Fetch ``url`` beside ``destination``, check ``md5_of(file) == expected_md5`` and only then
    rename it into place, so a failed or interrupted download never leaves a partial file under
    the real name; a wrong sum raises ``error`` (``content`` says what the sum is of).

    >>> download_verified(url, Path("input.txt"), "6fb458f1...", file_md5, TextDataError)
    """
    handle, temporary_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as out, _open_url(url) as response:
            shutil.copyfileobj(response, out)
        actual_md5 = md5_of(temporary)
        if actual_md5 != expected_md5:
            raise error(f"{url}: checksum mismatch: md5 of {content} is {actual_md5}, expected {expected_md5}")
        os.chmod(temporary, 0o644)  # mkstemp creates owner-only files; data files are meant to be readable
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def _open_url(url: str):
    try:
        return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.URLError as error:
        raise OSError(f"{url}: download failed: {error.reason}") from error


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/funcgrad/<name>`` (``~/.cache/funcgrad/<name>`` when the variable is unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "funcgrad" / name
