"""Specification of funcgrad.layers.embedding: nn.Embedding's init, lookup and padding row.

Each drawn case loads funcgrad's table into torch's own ``nn.Embedding`` with
``load_state_dict(strict=True)`` and runs both in float64 and the tested dtype; the
project's verdict judges the looked-up vectors and the table's gradient of ``sum(y * g)``.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcgrad as fg
from funcgrad.layers.embedding import embedding_apply, embedding_init
from tests.helpers_torch import DTYPES, jax_precision

TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
# A few table and index shapes (each compiles once), every value and padding row drawn.
TABLES = [(1, 3), (5, 2), (12, 4)]
INDEX_SHAPES = [(1,), (7,), (3, 4)]


@functools.partial(jax.jit, static_argnames="padding_idx")
def lookup_and_grad(params, indices, g, padding_idx):
    y, vjp = jax.vjp(lambda params: embedding_apply(params, indices, padding_idx=padding_idx), params)
    return y, vjp(g)[0]


def jax_results(weight, indices, g, padding_idx, dtype):
    with jax_precision(dtype):
        y, grads = lookup_and_grad({"weight": weight.astype(dtype)}, indices, g.astype(dtype), padding_idx)
    return {"y": np.asarray(y), "grad/weight": np.asarray(grads["weight"])}


def torch_results(weight, indices, g, padding_idx, dtype):
    embedding = torch.nn.Embedding(*weight.shape, padding_idx=padding_idx, dtype=TORCH_DTYPES[dtype])
    embedding.load_state_dict({"weight": torch.tensor(weight.astype(dtype))}, strict=True)
    y = embedding(torch.tensor(indices))
    (y * torch.tensor(g.astype(dtype))).sum().backward()
    return {"y": y.detach().numpy(), "grad/weight": embedding.weight.grad.numpy()}


@st.composite
def embedding_cases(draw):
    num_embeddings, embedding_dim = draw(st.sampled_from(TABLES))
    padding_idx = draw(st.one_of(st.none(), st.integers(-num_embeddings, num_embeddings - 1)))
    shape = draw(st.sampled_from(INDEX_SHAPES))
    indices = draw(st.lists(st.integers(0, num_embeddings - 1), min_size=int(np.prod(shape)),
                            max_size=int(np.prod(shape))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight = rng.normal(size=(num_embeddings, embedding_dim))  # the padding row too: it is looked up as is
    g = rng.normal(size=(*shape, embedding_dim))
    return weight, np.array(indices, np.int64).reshape(shape), g, padding_idx


@DTYPES
@settings(max_examples=25, deadline=None)
@given(case=embedding_cases())
def test_embedding_matches_torch_and_gives_the_padding_row_no_gradient(dtype, case):
    weight, indices, g, padding_idx = case
    ours = jax_results(weight, indices, g, padding_idx, dtype)
    theirs = torch_results(weight, indices, g, padding_idx, dtype)
    rows = fg.parity.compare_results(ours, theirs, dtype,
                                     reference=torch_results(weight, indices, g, padding_idx, np.float64))
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)
    if padding_idx is not None:
        assert not np.any(ours["grad/weight"][padding_idx]) and not np.any(theirs["grad/weight"][padding_idx])


def test_padding_row_is_looked_up_but_not_trained():
    weight = np.arange(12.0).reshape(4, 3)
    indices = np.array([2, 0, 2, 3])
    ours = jax_results(weight, indices, np.ones((4, 3)), 2, np.float32)
    np.testing.assert_array_equal(ours["y"], weight[indices])  # the row's values, nonzero here
    np.testing.assert_array_equal(ours["grad/weight"], [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]])
    without_padding = jax_results(weight, indices, np.ones((4, 3)), None, np.float32)
    np.testing.assert_array_equal(without_padding["grad/weight"][2], [2, 2, 2])


@DTYPES
@pytest.mark.parametrize("padding_idx, row", [(None, None), (0, 0), (3, 3), (-1, 4), (-5, 0)])
def test_embedding_init_is_torchs_layout_and_zeroes_the_padding_row(dtype, padding_idx, row):
    with jax_precision(dtype):
        params = embedding_init(jax.random.key(0), 5, 3, padding_idx=padding_idx, dtype=dtype)
    torch_layer = torch.nn.Embedding(5, 3, padding_idx=padding_idx, dtype=TORCH_DTYPES[dtype])
    torch_layer.load_state_dict({"weight": torch.tensor(np.asarray(params["weight"]))}, strict=True)
    assert params["weight"].dtype == dtype and params["weight"].shape == (5, 3)
    zero_rows = [i for i in range(5) if not np.any(np.asarray(params["weight"][i]))]
    assert zero_rows == ([] if row is None else [row])
    if padding_idx is not None:
        assert torch_layer.padding_idx == row  # torch counts a negative padding_idx from the end too


def test_embedding_init_draws_standard_normal():
    values = np.asarray(embedding_init(jax.random.key(1), 1000, 50)["weight"]).ravel()
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01
    np.testing.assert_allclose(np.quantile(values, [0.1587, 0.5, 0.8413]), [-1, 0, 1], atol=0.02)


def test_embedding_init_is_a_function_of_its_key():
    first, again, other = (embedding_init(jax.random.key(k), 4, 3)["weight"] for k in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.any(np.asarray(first) == np.asarray(other))


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "jit"])
def test_embedding_apply_refuses_float_indices(compile):
    params = embedding_init(jax.random.key(0), 4, 3)
    apply = functools.partial(embedding_apply, params)
    with pytest.raises(TypeError, match="indices must be integers, got dtype float32"):
        (jax.jit(apply) if compile else apply)(jnp.array([0.0, 1.0]))


@pytest.mark.parametrize("bad", [4, 7, -1])
def test_embedding_apply_refuses_an_out_of_range_index_as_torch_does(bad):
    """IndexError, torch's exception for it ('index out of range in self'): code that
    catches torch's error catches this one."""
    params = embedding_init(jax.random.key(0), 4, 3)
    with pytest.raises(IndexError, match=re.escape(f"index {bad} is out of range for 4 embeddings (valid: 0..3)")):
        embedding_apply(params, jnp.array([0, bad, 1]))
    with pytest.raises(IndexError):
        torch.nn.Embedding(4, 3)(torch.tensor([0, bad, 1]))


def test_embedding_apply_under_jit_returns_nan_rows_for_out_of_range_indices():
    """Nothing can raise inside jit: the bad rows are NaN (JAX would otherwise clamp 4 to the
    last row and wrap -1 to it), the good ones are looked up."""
    params = embedding_init(jax.random.key(0), 4, 3)
    y = np.asarray(jax.jit(embedding_apply)(params, jnp.array([4, 2, -1])))
    assert np.isnan(y[[0, 2]]).all()
    np.testing.assert_array_equal(y[1], params["weight"][2])


@pytest.mark.parametrize("padding_idx", [4, -5])
def test_padding_idx_must_be_within_num_embeddings(padding_idx):
    with pytest.raises(ValueError, match=f"padding_idx {padding_idx} must be within num_embeddings"):
        embedding_init(jax.random.key(0), 4, 3, padding_idx=padding_idx)
    with pytest.raises(ValueError, match=f"padding_idx {padding_idx} must be within num_embeddings"):
        embedding_apply({"weight": jnp.zeros((4, 3))}, jnp.array([0]), padding_idx=padding_idx)
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        torch.nn.Embedding(4, 3, padding_idx=padding_idx)


def test_embedding_init_refuses_half_precision():
    with pytest.raises(TypeError, match="embedding_init: dtype float16 is not supported"):
        embedding_init(jax.random.key(0), 4, 3, dtype=jnp.float16)
