"""Specification of funcgrad.layers.attention: F.scaled_dot_product_attention and nn.MultiheadAttention.

Each drawn case runs torch's own function or module (MHA loaded from funcgrad's params with
``load_state_dict(strict=True)``, which proves the names) in float64 and in the tested dtype,
and funcgrad (under ``jit``) in the tested dtype; the project's verdict judges the outputs, the
attention weights and the gradients of ``sum(y * g)`` for every input and parameter. torch
draws attention dropout inside its kernels; the replay tests put funcgrad's mask in its place:
in a hand-written twin of SDPA's math kernel with an ``nn.Dropout`` on the weights, and in
torch's own ``F.multi_head_attention_forward`` by swapping the two functions it drops through.
"""

import contextlib
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import funcgrad as fg
from funcgrad.layers.attention import (
    MultiheadAttention, multihead_attention_apply, multihead_attention_init, scaled_dot_product_attention,
)
from funcgrad.layers.dropout import layer_key, replay_dropout
from funcgrad.state_dict import nested
from tests.helpers_attention import (
    ManualAttention, assert_parity, drawn_like, failing, mha_dropout_replayed, tensor, to_numpy,
)
from tests.helpers_torch import DTYPES, jax_precision

TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
# The cases mix bool and float masks on purpose: torch allows it, with a deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched")
EXAMPLES = 6  # each example compiles its own shapes: seconds apiece
# float64 proves the algorithm down to one query, one key, one feature; float32 is judged
# against torch's own float32 rounding, on shapes wide enough for that band to be measured,
# and drawn derandomized (as tests/test_layers_norm.py), so that its verdict does not depend
# on the run.
SIZES = {np.float64: {"seq": (1, 5), "dim": (1, 5), "head_dim": (1, 3)},
         np.float32: {"seq": (4, 9), "dim": (8, 16), "head_dim": (3, 6)}}
# The spread of q and k, and the largest explicit scale. float32 keeps |logits| below ~30:
# beyond, the logits' rounding (|logit| * eps) is amplified in exp and which order of the
# product and the scale runs decides a factor of up to ~10 in the error. There torch's float32
# kernels were up to 11x nearer float64 than JAX, and than torch's own float32 reference
# implementation (its documented "equivalent" code, whose error equals JAX's).
SPREAD = {np.float64: (0.1, 3.0, 2.0), np.float32: (0.1, 1.5, 1.0)}


# ---------------------------------------------------------------- scaled_dot_product_attention

@st.composite
def sdpa_cases(draw, dtype):
    sizes = SIZES[dtype]
    leading = draw(st.sampled_from([(), (2,), (2, 3)]))
    length, source = draw(st.integers(*sizes["seq"])), draw(st.integers(*sizes["seq"]))
    width, value_width = draw(st.integers(*sizes["dim"])), draw(st.integers(*sizes["dim"]))
    kind = draw(st.sampled_from(["none", "causal", "bool", "float"]))
    # A mask of any shape that broadcasts: some leading dims 1, some left out.
    mask_leading = tuple(draw(st.sampled_from([1, size])) for size in leading)[draw(st.integers(0, len(leading))):]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low, high, largest_scale = SPREAD[dtype]
    spread = draw(st.floats(low, high))
    case = dict(query=spread * rng.normal(size=(*leading, length, width)),
                key=spread * rng.normal(size=(*leading, source, width)),
                value=rng.normal(size=(*leading, source, value_width)),
                g=rng.normal(size=(*leading, length, value_width)),
                attn_mask=None, is_causal=kind == "causal", scale=draw(st.one_of(st.none(), st.floats(0.05, largest_scale))))
    mask_shape = (*mask_leading, length, source)
    if kind == "bool":  # rows that keep nothing are allowed: SDPA gives zeros there
        case["attn_mask"] = rng.random(mask_shape) < draw(st.floats(0.4 if dtype == np.float64 else 0.6, 1.0))
    elif kind == "float":
        case["attn_mask"] = np.where(rng.random(mask_shape) < 0.2, -np.inf, 2 * rng.normal(size=mask_shape))
    return case


@functools.partial(jax.jit, static_argnames=("is_causal", "scale"))
def jax_sdpa_and_grads(query, key, value, attn_mask, g, is_causal, scale):
    def attend(query, key, value):
        return scaled_dot_product_attention(query, key, value, attn_mask, is_causal=is_causal, scale=scale)
    y, vjp = jax.vjp(attend, query, key, value)
    return {"y": y, "grad": dict(zip(("query", "key", "value"), vjp(g)))}


def jax_sdpa(case, dtype):
    with jax_precision(dtype):
        arrays = {name: None if case[name] is None else
                  (case[name].astype(dtype) if case[name].dtype.kind == "f" else case[name])
                  for name in ("query", "key", "value", "attn_mask", "g")}
        return to_numpy(jax_sdpa_and_grads(**arrays, is_causal=case["is_causal"], scale=case["scale"]))


def torch_sdpa(case, dtype, attention=F.scaled_dot_product_attention):
    q, k, v = (tensor(case[name], dtype, requires_grad=True) for name in ("query", "key", "value"))
    mask = None if case["attn_mask"] is None else tensor(case["attn_mask"], dtype)
    y = attention(q, k, v, attn_mask=mask, is_causal=case["is_causal"], scale=case["scale"])
    (y * tensor(case["g"], dtype)).sum().backward()
    return to_numpy({"y": y, "grad": {"query": q.grad, "key": k.grad, "value": v.grad}})


def assert_sdpa_matches_torch(case, dtype):
    assert_parity(jax_sdpa(case, dtype), torch_sdpa(case, dtype), torch_sdpa(case, np.float64), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=sdpa_cases(np.float64))
def test_sdpa_matches_torch_in_float64(case):
    assert_sdpa_matches_torch(case, np.float64)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=sdpa_cases(np.float32))
def test_sdpa_matches_torch_in_float32(case):
    assert_sdpa_matches_torch(case, np.float32)


def test_sdpa_gives_zeros_and_zero_gradients_on_a_fully_masked_row():
    """torch 2.13's CPU kernels (flash without dropout, math with) give a row that keeps
    nothing zeros, where a plain softmax gives NaN."""
    rng = np.random.default_rng(0)
    mask = rng.random((4, 6)) < 0.7
    mask[2] = False
    case = dict(query=rng.normal(size=(2, 4, 3)), key=rng.normal(size=(2, 6, 3)), value=rng.normal(size=(2, 6, 5)),
                g=rng.normal(size=(2, 4, 5)), attn_mask=mask, is_causal=False, scale=None)
    ours, theirs = jax_sdpa(case, np.float64), torch_sdpa(case, np.float64)
    assert_parity(ours, theirs, None, np.float64)
    assert np.all(ours["y"][:, 2] == 0) and np.all(ours["grad"]["query"][:, 2] == 0)
    assert np.all(np.isfinite(ours["grad"]["key"])) and np.all(np.isfinite(ours["grad"]["value"]))
    for dropout_p in (0.0, 0.3):  # both of torch's CPU kernels
        out = F.scaled_dot_product_attention(*(torch.tensor(case[n]) for n in ("query", "key", "value")),
                                             attn_mask=torch.tensor(mask), dropout_p=dropout_p)
        assert torch.all(out[:, 2] == 0)


def test_verdict_rejects_an_mha_mask_passed_to_sdpa_uninverted():
    """MHA's bool True is masked out, SDPA's takes part: the mask passed unchanged is caught."""
    rng = np.random.default_rng(1)
    masked_out = rng.random((5, 5)) < 0.3
    np.fill_diagonal(masked_out, False)
    case = dict(query=rng.normal(size=(2, 5, 4)), key=rng.normal(size=(2, 5, 4)), value=rng.normal(size=(2, 5, 4)),
                g=rng.normal(size=(2, 5, 4)), attn_mask=~masked_out, is_causal=False, scale=None)
    theirs = torch_sdpa(case, np.float64)
    assert_parity(jax_sdpa(case, np.float64), theirs, None, np.float64)
    assert {"y", "grad/query"} <= failing(jax_sdpa(case | {"attn_mask": masked_out}, np.float64), theirs, None,
                                          np.float64)


def test_sdpa_scale_is_one_over_sqrt_head_dim_not_embed_dim():
    rng = np.random.default_rng(2)
    q, k, v = (rng.normal(size=(2, 4, 3, 8)) for _ in range(3))  # 4 heads of 8: E = 32
    theirs = F.scaled_dot_product_attention(*map(torch.tensor, (q, k, v))).numpy()
    with jax_precision(np.float64):
        np.testing.assert_allclose(np.asarray(scaled_dot_product_attention(q, k, v)), theirs, rtol=1e-12)
        assert not np.allclose(np.asarray(scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(32))), theirs)


@DTYPES
@pytest.mark.parametrize("kind", ["causal", "bool"])
def test_sdpa_dropout_replays_in_a_twin_with_an_nn_dropout_on_the_weights(dtype, kind):
    rng = np.random.default_rng(3)
    shape = (2, 3, 6, 8) if dtype == np.float32 else (2, 2, 4, 3)
    case = dict(query=rng.normal(size=shape), key=rng.normal(size=shape), value=rng.normal(size=shape),
                g=rng.normal(size=shape), is_causal=kind == "causal", scale=None,
                attn_mask=None if kind == "causal" else rng.random((shape[-2], shape[-2])) < 0.7)
    step_key, p = jax.random.key(7), 0.4

    def twin(dtype):
        model = ManualAttention(p)
        with replay_dropout(model, step_key):
            return torch_sdpa(case, dtype, attention=model)

    with jax_precision(dtype):
        arrays = [jnp.asarray(case[n].astype(dtype)) for n in ("query", "key", "value")]
        mask = None if case["attn_mask"] is None else jnp.asarray(case["attn_mask"])
        @jax.jit
        def attend_and_grads(arrays, mask, g):
            y, vjp = jax.vjp(lambda *qkv: scaled_dot_product_attention(
                *qkv, mask, p, case["is_causal"], dropout_key=layer_key(step_key, "attn_dropout")), *arrays)
            return {"y": y, "grad": dict(zip(("query", "key", "value"), vjp(g)))}

        ours = to_numpy(attend_and_grads(arrays, mask, jnp.asarray(case["g"].astype(dtype))))
    assert_parity(ours, twin(dtype), twin(np.float64), dtype)
    assert np.mean(ours["y"] == 0) < 0.5  # dropped weights, not dropped outputs


# ---------------------------------------------------------------- nn.MultiheadAttention

@st.composite
def mha_cases(draw, dtype):
    sizes = SIZES[dtype]
    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(*sizes["head_dim"]))
    embed_dim = heads * head_dim
    kdim, vdim = draw(st.sampled_from([(None, None), (None, 2), (3, None), (2, 5)]))
    batched, batch_first, batch = draw(st.booleans()), draw(st.booleans()), draw(st.integers(1, 3))
    length = draw(st.integers(*sizes["seq"]))
    self_attention = kdim is None and vdim is None and draw(st.booleans())
    source = length if self_attention else draw(st.integers(*sizes["seq"]))
    need_weights = draw(st.booleans())
    padding = draw(st.sampled_from(["none", "bool", "float"]))
    attention = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    three_d = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def inputs(seq, width):
        shape = (seq, width) if not batched else (batch, seq, width) if batch_first else (seq, batch, width)
        return rng.normal(size=shape)

    query = inputs(length, embed_dim)
    key = query if self_attention else inputs(source, kdim or embed_dim)
    value = query if self_attention else inputs(source, vdim or embed_dim)
    heads_dim = (batch * heads,) if batched else (heads,)

    def mask(shape, kind):
        # Column 0 always takes part: a row that keeps nothing is NaN with need_weights (its own test).
        if kind == "bool":
            out = rng.random(shape) < 0.3
            out[..., 0] = False
        else:
            out = np.where(rng.random(shape) < 0.2, -np.inf, rng.normal(size=shape))
            out[..., 0] = rng.normal(size=out[..., 0].shape)
        return out

    attn_mask = None
    if attention == "causal":
        attn_mask = np.triu(np.ones((length, source), bool), 1)
    elif attention != "none":
        attn_mask = mask((*heads_dim, length, source) if three_d else (length, source), attention)
    average = draw(st.booleans())
    weights_shape = (*((batch,) if batched else ()), *(() if average else (heads,)), length, source)
    return finish_mha_case(dict(
        embed_dim=embed_dim, num_heads=heads, kdim=kdim, vdim=vdim, bias=draw(st.booleans()), batch_first=batch_first,
        query=query, key=key, value=value, self_attention=self_attention, need_weights=need_weights,
        average_attn_weights=average, attn_mask=attn_mask, is_causal=attention == "causal" and draw(st.booleans()),
        key_padding_mask=None if padding == "none" else mask((batch, source) if batched else (source,), padding),
        g=rng.normal(size=query.shape), g_weights=rng.normal(size=weights_shape) if need_weights else None), rng)


def finish_mha_case(case, rng):
    """The case with its params: the shapes of funcgrad's init, values drawn."""
    return case | {"params": drawn_like(lambda: multihead_attention_init(
        jax.random.key(0), case["embed_dim"], case["num_heads"], bias=case["bias"], kdim=case["kdim"],
        vdim=case["vdim"]), rng)}


def mha_params(case, dtype):
    return jax.tree.map(lambda leaf: leaf.astype(dtype), case["params"])


MHA_STATIC = ("num_heads", "need_weights", "average_attn_weights", "is_causal", "batch_first", "self_attention",
              "dropout", "train")


@functools.partial(jax.jit, static_argnames=MHA_STATIC)
def jax_mha_and_grads(params, query, key, value, key_padding_mask, attn_mask, g, g_weights, dropout_key, *,
                      self_attention, **options):
    def attend(params, query, key, value):
        if self_attention:
            key = value = query
        return multihead_attention_apply(params, query, key, value, key_padding_mask=key_padding_mask,
                                         attn_mask=attn_mask, dropout_key=dropout_key, **options)

    (y, weights), vjp = jax.vjp(attend, params, query, key, value)
    grads = vjp((g, g_weights))
    names = ("query",) if self_attention else ("query", "key", "value")
    return {"y": y, "grad": dict(zip(names, grads[1:])) | grads[0]} | ({} if weights is None else {"weights": weights})


def jax_mha(case, dtype, dropout=0.0, train=False, dropout_key=None):
    with jax_precision(dtype):
        arrays = {name: None if case[name] is None else
                  (case[name].astype(dtype) if case[name].dtype.kind == "f" else case[name])
                  for name in ("query", "key", "value", "key_padding_mask", "attn_mask")}
        g, g_weights = gradients_of_outputs(case, dtype)
        return to_numpy(jax_mha_and_grads(
            mha_params(case, dtype), **arrays, g=g, g_weights=g_weights, dropout_key=dropout_key,
            self_attention=case["self_attention"], num_heads=case["num_heads"], need_weights=case["need_weights"],
            average_attn_weights=case["average_attn_weights"], is_causal=case["is_causal"],
            batch_first=case["batch_first"], dropout=dropout, train=train))


def gradients_of_outputs(case, dtype):
    """The ``g`` of ``sum(y * g) + sum(weights * g_weights)``."""
    return case["g"].astype(dtype), None if case["g_weights"] is None else case["g_weights"].astype(dtype)


def torch_mha_module(case, dtype, dropout=0.0):
    module = nn.MultiheadAttention(case["embed_dim"], case["num_heads"], dropout=dropout, bias=case["bias"],
                                   kdim=case["kdim"], vdim=case["vdim"], batch_first=case["batch_first"],
                                   dtype=TORCH_DTYPES[dtype])
    module.load_state_dict({name: torch.tensor(value) for name, value in
                            fg.to_state_dict(mha_params(case, dtype)).items()}, strict=True)
    return module


def torch_mha(case, dtype, dropout=0.0, replay_key=None):
    module = torch_mha_module(case, dtype, dropout)
    query = tensor(case["query"], dtype, requires_grad=True)
    key, value = (query, query) if case["self_attention"] else (
        tensor(case[name], dtype, requires_grad=True) for name in ("key", "value"))
    masks = {name: None if case[name] is None else tensor(case[name], dtype)
             for name in ("key_padding_mask", "attn_mask")}
    with mha_dropout_replayed(replay_key, "dropout") if replay_key is not None else contextlib.nullcontext():
        y, weights = module(query, key, value, need_weights=case["need_weights"], is_causal=case["is_causal"],
                            average_attn_weights=case["average_attn_weights"], **masks)
    g, g_weights = gradients_of_outputs(case, dtype)
    loss = (y * torch.tensor(g)).sum()
    if weights is not None:
        loss = loss + (weights * torch.tensor(g_weights)).sum()
    loss.backward()
    inputs = {"query": query.grad} if case["self_attention"] else {"query": query.grad, "key": key.grad,
                                                                     "value": value.grad}
    grads = nested({name: p.grad for name, p in module.named_parameters()})
    return to_numpy({"y": y, "grad": inputs | grads} | ({} if weights is None else {"weights": weights}))


def assert_mha_matches_torch(case, dtype):
    assert_parity(jax_mha(case, dtype), torch_mha(case, dtype), torch_mha(case, np.float64), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=mha_cases(np.float64))
def test_mha_matches_torch_in_float64(case):
    assert_mha_matches_torch(case, np.float64)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=mha_cases(np.float32))
def test_mha_matches_torch_in_float32(case):
    assert_mha_matches_torch(case, np.float32)


@DTYPES
@pytest.mark.parametrize("need_weights", [True, False], ids=["need-weights", "sdpa-path"])
def test_mha_dropout_replays_in_torchs_own_mha(dtype, need_weights):
    rng = np.random.default_rng(4)
    x, padding = rng.normal(size=(3, 6, 8)), rng.random((3, 6)) < 0.3
    padding[:, 0] = False
    case = finish_mha_case(dict(
        embed_dim=8, num_heads=2, kdim=None, vdim=None, bias=True, batch_first=True, self_attention=True,
        need_weights=need_weights, average_attn_weights=False, is_causal=False, attn_mask=None, query=x, key=x,
        value=x, key_padding_mask=padding, g=rng.normal(size=x.shape),
        g_weights=rng.normal(size=(3, 2, 6, 6)) if need_weights else None), rng)
    step_key = jax.random.key(11)
    ours = jax_mha(case, dtype, dropout=0.3, train=True, dropout_key=layer_key(step_key, "dropout"))
    assert_parity(ours, torch_mha(case, dtype, 0.3, step_key), torch_mha(case, np.float64, 0.3, step_key), dtype)
    if need_weights:  # dropout acts on the returned weights, as torch's
        assert 0.1 < np.mean(ours["weights"] == 0) < 0.6


def test_mha_layer_is_self_attention_keyed_by_its_name():
    layer = MultiheadAttention(8, 2, dropout=0.25, batch_first=True)
    params, buffers = layer.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 5, 8)), jnp.float32)
    step_key = jax.random.key(3)
    y, new_buffers = jax.jit(functools.partial(layer.apply, train=True, name="encoder.self_attn"))(
        params, buffers, x, key=step_key)
    expected, _ = multihead_attention_apply(params, x, x, x, num_heads=2, need_weights=False, batch_first=True,
                                            dropout=0.25, train=True,
                                            dropout_key=layer_key(step_key, "encoder.self_attn.dropout"))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(expected))
    assert new_buffers == {}
    assert repr(layer) == "MultiheadAttention(embed_dim=8, num_heads=2, dropout=0.25, bias=True, batch_first=True)"
    cross, _ = layer.apply(params, buffers, (x, x[:, :3], x[:, :3]), train=False)
    assert cross.shape == (2, 5, 8)
    with pytest.raises(ValueError, match="needs a key in train mode"):
        layer.apply(params, buffers, x, train=True)


@pytest.mark.parametrize("need_weights", [True, False], ids=["need-weights", "sdpa-path"])
def test_mha_fully_masked_row_is_what_torch_gives(need_weights):
    """torch's need_weights path softmaxes a row of -inf into NaN (output and weights); its
    SDPA path gives zeros, so the output is out_proj's bias there."""
    rng = np.random.default_rng(6)
    padding = np.zeros((3, 5), bool)
    padding[1] = True  # the second sequence is all padding
    case = finish_mha_case(dict(
        embed_dim=6, num_heads=2, kdim=None, vdim=None, bias=True, batch_first=False, self_attention=False,
        need_weights=need_weights, average_attn_weights=True, is_causal=False, attn_mask=None,
        query=rng.normal(size=(4, 3, 6)), key=rng.normal(size=(5, 3, 6)), value=rng.normal(size=(5, 3, 6)),
        key_padding_mask=padding, g=rng.normal(size=(4, 3, 6)),
        g_weights=rng.normal(size=(3, 4, 5)) if need_weights else None), rng)
    ours, theirs = jax_mha(case, np.float64), torch_mha(case, np.float64)
    assert np.isnan(ours["y"][:, 1]).all() == need_weights
    assert_parity({"y": ours["y"]} | ({"weights": ours["weights"]} if need_weights else {}),
                  {"y": theirs["y"]} | ({"weights": theirs["weights"]} if need_weights else {}), None, np.float64)
    if not need_weights:
        np.testing.assert_allclose(ours["y"][:, 1], np.broadcast_to(mha_params(case, np.float64)["out_proj"]["bias"],
                                                                    (4, 6)), rtol=1e-12)


def test_mha_bool_mask_true_is_masked_out_unlike_sdpa():
    rng = np.random.default_rng(7)
    params = multihead_attention_init(jax.random.key(0), 4, 1)
    x = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)  # unbatched (L, E)
    masked_out = jnp.asarray([[False, True, True], [False, False, True], [False, False, False]])
    _, weights = multihead_attention_apply(params, x, x, x, num_heads=1, attn_mask=masked_out, train=False)
    assert np.all(np.asarray(weights)[np.asarray(masked_out)] == 0)
    module = nn.MultiheadAttention(4, 1)
    module.load_state_dict({name: torch.tensor(v) for name, v in fg.to_state_dict(params).items()}, strict=True)
    _, theirs = module(*(torch.tensor(np.asarray(x)),) * 3, attn_mask=torch.tensor(np.asarray(masked_out)))
    np.testing.assert_allclose(np.asarray(weights), theirs.detach().numpy(), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("options", [dict(), dict(kdim=3, vdim=5), dict(bias=False), dict(kdim=3)],
                         ids=["packed", "separate", "no-bias", "kdim-only"])
def test_mha_init_is_torch_state_dict_and_distribution(options):
    module = nn.MultiheadAttention(16, 4, **options)
    ours = fg.to_state_dict(multihead_attention_init(jax.random.key(0), 16, 4, **options))
    assert list(ours) == list(module.state_dict())
    assert {n: v.shape for n, v in ours.items()} == {n: tuple(t.shape) for n, t in module.state_dict().items()}
    module.load_state_dict({name: torch.tensor(value) for name, value in ours.items()}, strict=True)
    for name, theirs in module.state_dict().items():
        theirs = theirs.numpy()
        if name.endswith("bias"):
            assert np.all(ours[name] == 0) and np.all(theirs == 0), name
            continue
        fan_out, fan_in = theirs.shape
        bound = 1 / math.sqrt(fan_in) if name == "out_proj.weight" else math.sqrt(6 / (fan_in + fan_out))
        for values in (ours[name], theirs):  # both U(-bound, bound): inside it, filling it
            assert np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound, name
            assert abs(values.std() - bound / math.sqrt(3)) < 0.25 * bound / math.sqrt(3), name


def test_mha_torch_state_dict_loads_into_funcgrad():
    module = nn.MultiheadAttention(6, 3, kdim=4, vdim=2, batch_first=True)
    params = fg.from_state_dict(module.state_dict())
    rng = np.random.default_rng(8)
    q, k, v = rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 2))
    y, w = multihead_attention_apply(params, *(jnp.asarray(a, jnp.float32) for a in (q, k, v)), num_heads=3,
                                     batch_first=True, train=False)
    theirs, their_w = module(*(torch.tensor(a, dtype=torch.float32) for a in (q, k, v)))
    np.testing.assert_allclose(np.asarray(y), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(w), their_w.detach().numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- refusals

def mha_call(**overrides):
    params = multihead_attention_init(jax.random.key(0), 8, 2)
    x = jnp.zeros((5, 3, 8))
    arguments = dict(query=x, key=x, value=x, num_heads=2, train=False) | overrides
    return multihead_attention_apply(params, **arguments)


@pytest.mark.parametrize("overrides, message", [
    (dict(attn_mask=jnp.zeros((5, 4), bool)), "attn_mask has shape (5, 4), but must be (5, 5) or (6, 5, 5)"),
    (dict(attn_mask=jnp.zeros((2, 5, 5), bool)), "attn_mask has shape (2, 5, 5), but must be (5, 5) or (6, 5, 5)"),
    (dict(key_padding_mask=jnp.zeros((5, 3), bool)), "key_padding_mask has shape (5, 3), but must be (3, 5)"),
    (dict(key_padding_mask=jnp.zeros((3, 5), jnp.int32)), "key_padding_mask has dtype int32; it must be bool or float"),
    (dict(), None),
    (dict(is_causal=True), "is_causal is a hint that attn_mask is the causal mask"),
    (dict(query=jnp.zeros((5, 3, 6))), "query has shape (5, 3, 6), whose last dim must be embed_dim = 8"),
    (dict(query=jnp.zeros((2, 5, 3, 8))), "query should be unbatched 2-D (L, E) or batched 3-D"),
    (dict(key=jnp.zeros((5, 2, 8)), value=jnp.zeros((5, 2, 8))), "query and key have batch sizes 3 and 2"),
    (dict(dropout=0.5, train=True), "dropout 0.5 needs dropout_key"),
    (dict(num_heads=3), "embed_dim 8 is not divisible by num_heads 3"),
])
def test_mha_refuses_bad_input_by_name(overrides, message):
    if message is None:  # a float mask in another dtype than the query's (x64 off: float32 query)
        with jax_precision(np.float64):
            params = multihead_attention_init(jax.random.key(0), 8, 2)
            x = jnp.zeros((5, 3, 8), jnp.float32)
            with pytest.raises(TypeError, match=r"attn_mask has dtype float64; it must be bool or float in the "
                                                r"query's dtype float32"):
                multihead_attention_apply(jax.tree.map(lambda a: a.astype(jnp.float32), params), x, x, x,
                                          num_heads=2, attn_mask=jnp.zeros((5, 5)), train=False)
        return
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        mha_call(**overrides)


def test_mha_refuses_unbuilt_options_by_name():
    for option in ("add_bias_kv", "add_zero_attn"):
        with pytest.raises(NotImplementedError, match=f"{option}=True is not supported"):
            multihead_attention_init(jax.random.key(0), 8, 2, **{option: True})
        with pytest.raises(NotImplementedError, match=f"{option}=True is not supported"):
            MultiheadAttention(8, 2, **{option: True})
    params = fg.from_state_dict(nn.MultiheadAttention(8, 2, add_bias_kv=True).state_dict())
    with pytest.raises(NotImplementedError, match="'bias_k' \\(add_bias_kv=True\\)"):
        multihead_attention_apply(params, *(jnp.zeros((5, 3, 8)),) * 3, num_heads=2, train=False)
    with pytest.raises(ValueError, match="embed_dim 8 is not divisible by num_heads 3"):
        MultiheadAttention(8, 3)


@pytest.mark.parametrize("arguments, message", [
    (dict(attn_mask=jnp.ones((4, 4), bool), is_causal=True), "is_causal=True builds its own mask"),
    (dict(attn_mask=jnp.ones((3, 4), bool)), "attn_mask has shape (3, 4), which does not broadcast"),
    (dict(attn_mask=jnp.ones((4, 4), jnp.int32)), "attn_mask has dtype int32"),
    (dict(dropout_p=0.1), "dropout 0.1 needs dropout_key"),
    (dict(key=jnp.ones((2, 4, 5))), "must have the same last dim (E)"),
    (dict(value=jnp.ones((2, 3, 3))), "must have the same sequence length S"),
    (dict(value=jnp.ones((2, 4, 3), jnp.int32)), "value has dtype int32"),
])
def test_sdpa_refuses_bad_input_by_name(arguments, message):
    x = jnp.ones((2, 4, 3))
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        scaled_dot_product_attention(**(dict(query=x, key=x, value=x) | arguments))
