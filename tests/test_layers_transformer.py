"""Specification of funcgrad.layers.transformer: nn.TransformerEncoderLayer and nanoGPT's GPT.

The encoder layer is held against torch's own module (loaded from funcgrad's params with
``load_state_dict(strict=True)``) in train mode with dropout 0, in eval mode with gradients
(torch's slow path) and in eval mode without (its fast path, forward only); nanoGPT against its
``model.py`` transcribed below, through both of its attention paths. The verdict judges outputs
and the gradients of ``sum(y * g)`` for the input and every parameter; dropout masks are
replayed into torch's ``nn.Dropout`` modules by ``replay_dropout`` and into MHA's weights as
tests/test_layers_attention.py does.
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
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import funcgrad as fg
from funcgrad.layers.dropout import replay_dropout
from funcgrad.layers.gpt import (
    GPT, GPTConfig, gpt_apply, gpt_block_apply, gpt_block_init, gpt_from_state_dict, gpt_init, gpt_to_state_dict,
    positional_embedding_apply,
)
from funcgrad.layers.transformer import TransformerEncoderLayer, transformer_encoder_layer_apply, transformer_encoder_layer_init
from tests.helpers_torch import DTYPES, jax_precision
from funcgrad.state_dict import nested
from compare.cases import _nanogpt as nanogpt
from tests.helpers_attention import assert_parity, drawn_like, mha_dropout_replayed, tensor, to_numpy

TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
# The cases mix bool and float masks on purpose: torch allows it, with a deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched")
EXAMPLES = 4  # each example compiles its own shapes: seconds apiece


def cast(tree, dtype):
    return jax.tree.map(lambda leaf: np.asarray(leaf).astype(dtype), tree)


# ---------------------------------------------------------------- nn.TransformerEncoderLayer

@st.composite
def encoder_cases(draw, dtype):
    heads = draw(st.integers(1, 2))
    head_dim = draw(st.integers(1, 3) if dtype == np.float64 else st.integers(4, 6))
    d_model = heads * head_dim
    batched, batch_first, batch = draw(st.booleans()), draw(st.booleans()), draw(st.integers(1, 2))
    length = draw(st.integers(1, 4) if dtype == np.float64 else st.integers(4, 7))
    options = dict(dim_feedforward=draw(st.integers(2, 6) if dtype == np.float64 else st.integers(8, 16)),
                   activation=draw(st.sampled_from(["relu", "gelu"])), norm_first=draw(st.booleans()),
                   bias=draw(st.booleans()), layer_norm_eps=draw(st.sampled_from([1e-5, 1e-3])),
                   batch_first=batch_first)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (length, d_model) if not batched else (batch, length, d_model) if batch_first else (length, batch, d_model)
    mask_kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    src_mask = None
    if mask_kind == "causal":
        src_mask = np.triu(np.ones((length, length), bool), 1)
    elif mask_kind != "none":
        mask_shape = ((batch if batched else 1) * heads, length, length) if draw(st.booleans()) else (length, length)
        src_mask = (rng.random(mask_shape) < 0.3 if mask_kind == "bool"
                    else np.where(rng.random(mask_shape) < 0.2, -np.inf, rng.normal(size=mask_shape)))
    padding = draw(st.sampled_from(["none", "bool", "float"]))
    padding_shape = (batch, length) if batched else (length,)
    src_key_padding_mask = None if padding == "none" else (
        rng.random(padding_shape) < 0.3 if padding == "bool" else rng.normal(size=padding_shape))
    params = drawn_like(lambda: transformer_encoder_layer_init(jax.random.key(0), d_model, heads,
                                                               options["dim_feedforward"], bias=options["bias"]), rng)
    params = jax.tree_util.tree_map_with_path(  # LayerNorm weights around 1
        lambda path, leaf: leaf + ("norm" in jax.tree_util.keystr(path) and "weight" in jax.tree_util.keystr(path)),
        params)
    return dict(nhead=heads, d_model=d_model, options=options, params=params, src=rng.normal(size=shape),
                g=rng.normal(size=shape), src_mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                is_causal=mask_kind == "causal" and draw(st.booleans()), train=draw(st.booleans()))


ENCODER_STATIC = ("nhead", "is_causal", "dropout", "activation", "layer_norm_eps", "batch_first", "norm_first", "train")


@functools.partial(jax.jit, static_argnames=ENCODER_STATIC)
def jax_encoder_and_grads(params, src, src_mask, src_key_padding_mask, g, key, **options):
    def forward(params, src):
        return transformer_encoder_layer_apply(params, src, src_mask=src_mask,
                                               src_key_padding_mask=src_key_padding_mask, key=key, **options)
    y, vjp = jax.vjp(forward, params, src)
    grad_params, grad_src = vjp(g)
    return {"y": y, "grad": {"src": grad_src} | grad_params}


def jax_encoder(case, dtype, dropout=0.0, key=None):
    options = {name: value for name, value in case["options"].items() if name not in ("dim_feedforward", "bias")}
    with jax_precision(dtype):
        masks = {name: None if case[name] is None else
                 (case[name].astype(dtype) if case[name].dtype.kind == "f" else case[name])
                 for name in ("src_mask", "src_key_padding_mask")}
        return to_numpy(jax_encoder_and_grads(cast(case["params"], dtype), case["src"].astype(dtype), **masks,
                                              g=case["g"].astype(dtype), key=key, nhead=case["nhead"],
                                              is_causal=case["is_causal"], dropout=dropout, train=case["train"],
                                              **options))


def torch_encoder_module(case, dtype, dropout=0.0):
    module = nn.TransformerEncoderLayer(case["d_model"], case["nhead"], dropout=dropout, dtype=TORCH_DTYPES[dtype],
                                        **case["options"])
    module.load_state_dict({name: torch.tensor(value) for name, value in
                            fg.to_state_dict(cast(case["params"], dtype)).items()}, strict=True)
    return module.train(case["train"])


def torch_encoder(case, dtype, dropout=0.0, replay_key=None):
    module = torch_encoder_module(case, dtype, dropout)
    src = tensor(case["src"], dtype, requires_grad=True)
    masks = {name: None if case[name] is None else tensor(case[name], dtype)
             for name in ("src_mask", "src_key_padding_mask")}
    with (replay_dropout(module, replay_key) if replay_key is not None else contextlib.nullcontext()), \
            (mha_dropout_replayed(replay_key, "self_attn.dropout") if replay_key is not None
             else contextlib.nullcontext()):
        y = module(src, is_causal=case["is_causal"], **masks)
    (y * torch.tensor(case["g"].astype(dtype))).sum().backward()
    return to_numpy({"y": y, "grad": {"src": src.grad} | nested({n: p.grad for n, p in module.named_parameters()})})


def assert_encoder_matches_torch(case, dtype):
    assert_parity(jax_encoder(case, dtype), torch_encoder(case, dtype), torch_encoder(case, np.float64), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=encoder_cases(np.float64))
def test_encoder_layer_matches_torch_in_train_and_eval_mode_in_float64(case):
    assert_encoder_matches_torch(case, np.float64)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=encoder_cases(np.float32))
def test_encoder_layer_matches_torch_in_train_and_eval_mode_in_float32(case):
    assert_encoder_matches_torch(case, np.float32)


def fast_path_case(padding):
    rng = np.random.default_rng(9)
    params = jax.tree.map(lambda leaf: leaf + 0.3 * rng.normal(size=leaf.shape),
                          to_numpy(transformer_encoder_layer_init(jax.random.key(1), 16, 4, 32)))
    return dict(nhead=4, d_model=16, params=params, src=rng.normal(size=(3, 6, 16)), g=np.zeros((3, 6, 16)),
                options=dict(dim_feedforward=32, activation="gelu", norm_first=False, bias=True, layer_norm_eps=1e-5,
                             batch_first=True),
                src_mask=None, src_key_padding_mask=padding, is_causal=False, train=False)


def torch_fast_path(case, dtype):
    module = torch_encoder_module(case, dtype)
    with torch.no_grad():  # no gradient, eval mode, batch_first, even heads: torch._transformer_encoder_layer_fwd
        padding = case["src_key_padding_mask"]
        return module(torch.tensor(case["src"].astype(dtype)),
                      src_key_padding_mask=None if padding is None else torch.tensor(padding)).numpy()


@DTYPES
def test_encoder_layer_matches_torchs_eval_fast_path(dtype):
    padding = np.zeros((3, 6), bool)
    padding[0, 4:] = padding[2, 1:] = True
    case = fast_path_case(padding)
    ours = jax_encoder(case, dtype)["y"]
    assert_parity({"y": ours}, {"y": torch_fast_path(case, dtype)}, {"y": torch_fast_path(case, np.float64)}, dtype)


def test_fully_padded_sequence_is_zeros_attention_as_torchs_slow_path_not_nan_as_its_fast_path():
    padding = np.zeros((3, 6), bool)
    padding[1] = True
    case = fast_path_case(padding)
    ours, slow = jax_encoder(case, np.float64)["y"], torch_encoder(case, np.float64)["y"]
    assert np.all(np.isfinite(ours))
    assert_parity({"y": ours}, {"y": slow}, None, np.float64)
    fast = torch_fast_path(case, np.float64)
    assert np.isnan(fast[1]).all() and np.isfinite(fast[[0, 2]]).all()


# Replay is checked in float64 here (float32 masks: tests/test_layers_attention.py), to keep the file short.
@pytest.mark.parametrize("dtype, norm_first", [(np.float64, True)], ids=["pre-norm-float64"])
def test_encoder_layer_dropouts_replay_torchs_four_masks(dtype, norm_first):
    case = fast_path_case(np.random.default_rng(2).random((3, 6)) < 0.3)
    case["options"] |= dict(norm_first=norm_first)
    case |= dict(train=True, g=np.random.default_rng(3).normal(size=case["src"].shape))
    step_key = jax.random.key(5)
    ours = jax_encoder(case, dtype, dropout=0.25, key=step_key)
    assert_parity(ours, torch_encoder(case, dtype, 0.25, step_key), torch_encoder(case, np.float64, 0.25, step_key),
                  dtype)
    assert not np.allclose(ours["y"], jax_encoder(case, dtype)["y"])  # it did drop


@pytest.mark.parametrize("bias", [True, False])
def test_encoder_layer_init_is_torch_state_dict(bias):
    module = nn.TransformerEncoderLayer(8, 2, 16, bias=bias)
    layer = TransformerEncoderLayer(8, 2, 16, bias=bias)
    params, buffers = layer.init(jax.random.key(0))
    ours = fg.to_state_dict(params)
    assert list(ours) == list(module.state_dict()) and buffers == {}
    assert {n: v.shape for n, v in ours.items()} == {n: tuple(t.shape) for n, t in module.state_dict().items()}
    module.load_state_dict({name: torch.tensor(value) for name, value in ours.items()}, strict=True)
    for name in ("norm1.weight", "norm2.weight"):
        assert np.all(ours[name] == 1)
    for name in ("linear1.weight", "linear2.weight"):  # nn.Linear's U(±1/sqrt(fan_in))
        assert np.abs(ours[name]).max() <= 1 / math.sqrt(ours[name].shape[1])


def test_encoder_layer_refuses_bad_input_by_name():
    params = transformer_encoder_layer_init(jax.random.key(0), 8, 2, 16)
    x = jnp.zeros((5, 3, 8))
    with pytest.raises(ValueError, match="activation should be relu/gelu, not 'tanh'"):
        transformer_encoder_layer_apply(params, x, nhead=2, activation="tanh", train=False)
    with pytest.raises(ValueError, match=re.escape("key_padding_mask has shape (5, 3), but must be (3, 5)")):
        transformer_encoder_layer_apply(params, x, nhead=2, src_key_padding_mask=jnp.zeros((5, 3), bool), train=False)
    with pytest.raises(ValueError, match="needs a key in train mode"):
        transformer_encoder_layer_apply(params, x, nhead=2, train=True)
    with pytest.raises(ValueError, match="d_model 8 is not divisible by nhead 3"):
        TransformerEncoderLayer(8, 3)


# ---------------------------------------------------------------- nanoGPT, as model.py writes it
# (compare/cases/_nanogpt.py, the char-gpt case's twin)

def torch_gpt(config: GPTConfig, params, dtype, flash: bool):
    """nanoGPT's GPT holding funcgrad's params, loaded strictly."""
    model = nanogpt.GPT(nanogpt.GPTConfig(**config._asdict()), flash).to(TORCH_DTYPES[dtype])
    model.load_state_dict({name: torch.tensor(value) for name, value in
                           gpt_to_state_dict(cast(params, dtype)).items()}, strict=True)
    return model


@st.composite
def gpt_cases(draw, dtype):
    # float64 down to one head of one feature and one token; float32 wide enough for its band.
    small = dtype == np.float64
    heads = draw(st.integers(1, 2))
    config = GPTConfig(block_size=draw(st.integers(3, 6) if small else st.integers(6, 8)),
                       vocab_size=draw(st.integers(3, 9) if small else st.integers(8, 16)),
                       n_layer=draw(st.integers(1, 2)), n_head=heads,
                       n_embd=heads * draw(st.integers(1, 3) if small else st.integers(6, 8)), bias=draw(st.booleans()))
    length = draw(st.integers(1 if small else 4, config.block_size))
    batch = draw(st.integers(1, 2) if small else st.just(2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def redraw(path, leaf):  # weights wider than nanoGPT's 0.02, LayerNorms and biases nonzero
        name = jax.tree_util.keystr(path)
        if len(leaf.shape) == 2:
            return 0.3 * rng.normal(size=leaf.shape)
        return (1.0 if "ln" in name and "weight" in name else 0.0) + 0.3 * rng.normal(size=leaf.shape)

    shapes = jax.eval_shape(lambda: gpt_init(jax.random.key(0), config))
    return dict(config=config, params=jax.tree_util.tree_map_with_path(redraw, shapes),
                idx=rng.integers(0, config.vocab_size, (batch, length)), flash=draw(st.booleans()),
                g=rng.normal(size=(batch, length, config.vocab_size)))


@functools.partial(jax.jit, static_argnames=("config", "train"))
def jax_gpt_and_grads(params, idx, g, key, config, train):
    logits, vjp = jax.vjp(lambda params: gpt_apply(params, idx, config=config, train=train, key=key), params)
    return {"logits": logits, "grad": vjp(g)[0]}


def jax_gpt(case, dtype, key=None):
    with jax_precision(dtype):
        return to_numpy(jax_gpt_and_grads(cast(case["params"], dtype), case["idx"], case["g"].astype(dtype), key,
                                          config=case["config"], train=key is not None))


def torch_gpt_run(case, dtype, key=None):
    model = torch_gpt(case["config"], case["params"], dtype, case["flash"])
    idx = torch.tensor(case["idx"])
    with replay_dropout(model, key) if key is not None else contextlib.nullcontext():
        logits, _ = model(idx, targets=idx)
    (logits * torch.tensor(case["g"].astype(dtype))).sum().backward()
    # named_parameters lists the tied table once, as transformer.wte.weight: its gradient sums both uses.
    return to_numpy({"logits": logits, "grad": nested({n: p.grad for n, p in model.named_parameters()})})


def assert_gpt_matches_torch(case, dtype):
    assert_parity(jax_gpt(case, dtype), torch_gpt_run(case, dtype), torch_gpt_run(case, np.float64), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=gpt_cases(np.float64))
def test_gpt_matches_nanogpt_on_both_attention_paths_in_float64(case):
    assert_gpt_matches_torch(case, np.float64)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=gpt_cases(np.float32))
def test_gpt_matches_nanogpt_on_both_attention_paths_in_float32(case):
    assert_gpt_matches_torch(case, np.float32)


@pytest.mark.parametrize("dtype", [np.float64], ids=["float64"])
def test_gpt_dropout_replays_nanogpts_manual_path_mask_for_mask(dtype):
    config = GPTConfig(block_size=8, vocab_size=7, n_layer=2, n_head=2, n_embd=8, dropout=0.3)
    rng = np.random.default_rng(10)
    case = dict(config=config, params=to_numpy(gpt_init(jax.random.key(3), config)), flash=False,
                idx=rng.integers(0, 7, (2, 8)), g=rng.normal(size=(2, 8, 7)))
    step_key = jax.random.key(21)
    ours = jax_gpt(case, dtype, key=step_key)
    assert_parity(ours, torch_gpt_run(case, dtype, step_key), torch_gpt_run(case, np.float64, step_key), dtype)
    assert not np.allclose(ours["logits"], jax_gpt(case, dtype)["logits"])  # it did drop


def test_gpt_state_dict_has_both_tied_keys_and_round_trips():
    config = GPTConfig(block_size=6, vocab_size=9, n_layer=2, n_head=2, n_embd=4, bias=False)
    model = GPT(config)
    params, buffers = model.init(jax.random.key(0))
    state_dict = gpt_to_state_dict(params)
    theirs = nanogpt.GPT(nanogpt.GPTConfig(**config._asdict()))
    assert list(state_dict) == list(theirs.state_dict()) and buffers == {}
    assert state_dict["lm_head.weight"] is state_dict["transformer.wte.weight"]
    theirs.load_state_dict({name: torch.tensor(value) for name, value in state_dict.items()}, strict=True)
    assert theirs.lm_head.weight is theirs.transformer.wte.weight  # still one tensor
    back = gpt_from_state_dict(theirs.state_dict())
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    manual = dict(nanogpt.GPT(nanogpt.GPTConfig(**config._asdict()), flash=False).state_dict())
    manual |= {f"transformer.h.{i}.attn.bias": torch.ones(1, 1, 6, 6).tril() for i in range(2)}  # model.py's checkpoints
    assert jax.tree.structure(gpt_from_state_dict(manual)) == jax.tree.structure(params)  # mask buffers dropped


def test_gpt_from_state_dict_refuses_untied_weights():
    state_dict = dict(nanogpt.GPT(nanogpt.GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=1, n_embd=2)).state_dict())
    state_dict["lm_head.weight"] = state_dict["lm_head.weight"] + 1
    with pytest.raises(ValueError, match="lm_head.weight differs from transformer.wte.weight; nanoGPT ties them"):
        gpt_from_state_dict(state_dict)
    del state_dict["lm_head.weight"]
    with pytest.raises(ValueError, match=re.escape("lacks ['lm_head.weight']")):
        gpt_from_state_dict(state_dict)


def test_gpt_init_is_nanogpts_distribution():
    config = GPTConfig(block_size=32, vocab_size=200, n_layer=3, n_head=4, n_embd=48)
    flat = fg.to_state_dict(gpt_init(jax.random.key(0), config))
    for name, value in flat.items():
        if name.endswith("c_proj.weight"):
            assert abs(value.std() - 0.02 / math.sqrt(2 * config.n_layer)) < 0.1 * 0.02 / math.sqrt(6), name
        elif value.ndim == 2:
            assert abs(value.std() - 0.02) < 0.002, name
        elif "ln" in name and name.endswith("weight"):
            assert np.all(value == 1), name
        else:
            assert np.all(value == 0), name


def test_gpt_block_has_nanogpts_names_and_computes_its_block():
    config = nanogpt.GPTConfig(block_size=5, n_head=2, n_embd=6, bias=True)
    params = to_numpy(gpt_block_init(jax.random.key(2), 6))
    block = nanogpt.Block(config, flash=True).double()
    assert list(fg.to_state_dict(params)) == list(block.state_dict())
    block.load_state_dict({name: torch.tensor(value.astype(np.float64)) for name, value in
                           fg.to_state_dict(params).items()}, strict=True)
    x = np.random.default_rng(11).normal(size=(2, 5, 6))
    with jax_precision(np.float64):
        ours = np.asarray(jax.jit(functools.partial(gpt_block_apply, n_head=2, train=False))(cast(params, np.float64), x))
    assert_parity({"y": ours}, {"y": block(torch.tensor(x)).detach().numpy()}, None, np.float64)


def test_gpt_refuses_a_sequence_longer_than_its_position_table():
    config = GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=1, n_embd=2)
    params = gpt_init(jax.random.key(0), config)
    with pytest.raises(ValueError, match="cannot forward sequence of length 6, block size is only 4"):
        gpt_apply(params, jnp.zeros((1, 6), int), config=config, train=False)
    with pytest.raises(ValueError, match=re.escape("cannot forward a sequence of length 6, the position table "
                                                   "(block_size) holds only 4")):
        positional_embedding_apply(params["transformer"]["wpe"], 6)
    with pytest.raises(ValueError, match="n_embd 6 is not divisible by n_head 4"):
        GPT(GPTConfig(block_size=4, vocab_size=5, n_layer=1, n_head=4, n_embd=6))
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        gpt_init(jax.random.key(0), dict(block_size=4))
    with pytest.raises(ValueError, match="needs a key in train mode"):
        gpt_apply(gpt_init(jax.random.key(0), config._replace(dropout=0.1)), jnp.zeros((1, 3), int),
                  config=config._replace(dropout=0.1), train=True)
