"""What the unit tests share when they hold funcgrad against PyTorch: dtypes, tolerances, modules."""

import jax
import numpy as np
import pytest
import torch

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])

# float32: the two frameworks may sum in a different order; float64 proves the same algorithm.
TOLERANCES = {
    np.float32: {"rtol": 1.3e-6, "atol": 1e-5},
    np.float64: {"rtol": 1e-12, "atol": 1e-12},
}


def jax_precision(dtype):
    """The context in which JAX creates arrays of ``dtype``: x64 on for float64 only."""
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def to_torch(array, requires_grad: bool = False) -> torch.Tensor:
    """A torch tensor holding a copy of ``array`` (JAX arrays convert to read-only numpy)."""
    return torch.tensor(np.array(array), requires_grad=requires_grad)


def torch_linear(params) -> torch.nn.Linear:
    """An ``nn.Linear`` holding funcgrad's ``{"weight", "bias"}`` params, in their dtype."""
    out_features, in_features = params["weight"].shape
    linear = torch.nn.Linear(in_features, out_features, dtype=to_torch(params["weight"]).dtype)
    linear.load_state_dict({name: to_torch(value) for name, value in params.items()})
    return linear
