"""Where and in what precision a comparison runs: device, dtype, matmul precision, versions."""

from __future__ import annotations

import dataclasses
import functools
import argparse
import importlib.metadata
import os
import platform
from pathlib import Path

import jax
import numpy as np
import torch

import funcgrad as fg


@dataclasses.dataclass(frozen=True)
class Context:
    """What every case needs to set both sides up the same way."""

    dtype: np.dtype
    jax_device: jax.Device
    torch_device: torch.device
    seed: int = 0
    mnist_dir: str | None = None
    # At most this many training steps, in a case that reads it (mnist-cnn): the test
    # suite's short run of a case whose full run takes minutes. None: the full run.
    max_steps: int | None = None
    text_file: str | None = None  # char-gpt's corpus (else $FUNCGRAD_TEXT, the cache, the excerpt)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {np.float32: torch.float32, np.float64: torch.float64}[self.dtype.type]

    def key(self, case_seed: int) -> jax.Array:
        """A PRNG key per case, derived from the run's seed."""
        return jax.random.fold_in(jax.random.key(self.seed), case_seed)

    def cast(self, tree):
        """Float leaves to the run's dtype; initial weights are drawn in float32 first, so
        the float32 and float64 runs start from the same numbers."""
        return jax.tree.map(
            lambda leaf: np.asarray(leaf).astype(self.dtype)
            if np.issubdtype(np.asarray(leaf).dtype, np.floating) else np.asarray(leaf),
            tree,
        )

    def to_torch(self, array) -> torch.Tensor:
        """A numpy array as a torch tensor on the run's device (copied: torch may write to it)."""
        return torch.tensor(np.array(array), device=self.torch_device)

    def mnist(self) -> tuple[str, dict]:
        """Real MNIST from the named folder, else from ``--download``'s cache, else sklearn's
        8x8 digits (labelled so)."""
        source = mnist_source(self.mnist_dir)
        if source is None:
            return "the MNIST stand-in, sklearn 8x8 digits (no MNIST folder given)", fg.digits_as_mnist()
        return "MNIST", _loaded_mnist(source)


    def text(self) -> tuple[str, str]:
        """The named text file (``--text``, else $FUNCGRAD_TEXT, else ``--download``'s cache),
        else the excerpt of tinyshakespeare shipped with funcgrad (named so)."""
        source = text_source(self.text_file)
        if source is None:
            return ("the tinyshakespeare stand-in, its first 49 980 characters shipped with funcgrad (no text file "
                    "given)", fg.shakespeare_excerpt())
        return f"the text of {source}", _loaded_text(source)


@functools.lru_cache(maxsize=1)
def _loaded_text(source: str) -> str:
    return fg.load_text(source)


def text_source(text_file: str | None) -> str | None:
    """The text file a run reads: ``text_file``, else $FUNCGRAD_TEXT, else the download cache's
    when it holds one; None when there is none (the excerpt stands in)."""
    named = text_file or os.environ.get(fg.TEXT_ENV_VAR)
    if named:
        return named
    cached = fg.text_cache_dir() / "input.txt"
    return str(cached) if cached.is_file() else None


@functools.lru_cache(maxsize=1)
def _loaded_mnist(source: str) -> dict:
    """MNIST read and checked once per process (a case reads it once per side and dtype), its
    arrays read-only so that no case can change what the next one reads."""
    data = fg.load_mnist(source)
    for array in data.values():
        array.setflags(write=False)
    return data


def mnist_source(mnist_dir: str | None) -> str | None:
    """The MNIST folder a run reads: ``mnist_dir``, else $FUNCGRAD_MNIST_DIR, else the download
    cache when it holds the files; None when there is none (the stand-in runs)."""
    named = mnist_dir or os.environ.get(fg.MNIST_ENV_VAR)
    if named:
        return named
    cache = fg.mnist_cache_dir()
    return str(cache) if any(cache.glob("t10k-labels-idx1-ubyte*")) else None


def select_devices(requested: str) -> tuple[jax.Device, torch.device]:
    """Map ``cpu``/``gpu``/``auto`` to one JAX device and one torch device of the same kind."""
    jax_gpus = _jax_gpus()
    if requested == "gpu" and not (jax_gpus and torch.cuda.is_available()):
        raise SystemExit(
            f"--device gpu: jax sees {len(jax_gpus)} GPU(s), torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}; both need a GPU (install jax[cuda] and a CUDA torch)"
        )
    if requested in ("gpu", "auto") and jax_gpus and torch.cuda.is_available():
        return jax_gpus[0], torch.device("cuda", 0)
    return jax.devices("cpu")[0], torch.device("cpu")


def _jax_gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


def set_matmul_precision() -> dict[str, str]:
    """Make both frameworks do float32 matmuls in full float32 (no TF32), and say so.

    On recent NVIDIA GPUs JAX's default float32 matmul may use TF32 while torch's does
    not; on CPU both already compute in float32, and the settings change nothing.
    """
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return {
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "torch_float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch_allow_tf32": str(torch.backends.cuda.matmul.allow_tf32),
    }


def _cpu_model() -> str:
    """The CPU's model name where Linux tells it (``platform.processor()`` is often empty)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(context: Context) -> dict:
    """Versions and devices, for the JSON report."""
    packages = ["jax", "jaxlib", "optax", "torch", "numpy", "scikit-learn"]
    device_name = (
        torch.cuda.get_device_name(context.torch_device)
        if context.torch_device.type == "cuda" else _cpu_model()
    )
    return {
        "versions": {"python": platform.python_version()}
        | {name: importlib.metadata.version(name) for name in packages},
        "device": {
            "kind": context.torch_device.type.replace("cuda", "gpu"),
            "name": device_name,
            "jax": str(context.jax_device),
            "torch": str(context.torch_device),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
    }


def check_output_path(parser: argparse.ArgumentParser, flag: str, path: str | None) -> None:
    """Refuse, before anything runs, a file that could not be written at the end."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        parser.error(f"{flag} {path}: the folder {folder} does not exist (create it first)")
    if Path(path).is_dir():
        parser.error(f"{flag} {path}: is a folder; name a file in it")
    if not os.access(folder, os.W_OK):
        parser.error(f"{flag} {path}: the folder {folder} is not writable")
