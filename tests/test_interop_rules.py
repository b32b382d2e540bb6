"""The name-and-layout rules between a torch state_dict and a framework's leaves, without any framework."""

import subprocess
import sys

import numpy as np
import pytest

from funcgrad.interop import rules
from funcgrad.interop.rules import Layer


def _leaf(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


CONV = Layer("conv1", "conv", {"kernel": _leaf(5, 5, 1, 16), "bias": _leaf(16)})
BN = Layer("bn1", "batchnorm", {"scale": _leaf(16), "bias": _leaf(16), "mean": _leaf(16), "var": _leaf(16)})
ATTENTION = Layer("attn", "attention", {
    **{f"{name}.kernel": _leaf(8, 2, 4) for name in ("query", "key", "value")},
    **{f"{name}.bias": _leaf(2, 4) for name in ("query", "key", "value")},
    "out.kernel": _leaf(2, 4, 8), "out.bias": _leaf(8)})
MODULES = {"features.0": "conv1", "features.1": "bn1"}


def _torch_state(pairs, seed=0):
    """A state_dict with every key the plan wants, filled with distinct values."""
    rng = np.random.default_rng(seed)
    state = {}
    for pair in pairs:
        if pair.framework_key is None:
            state[pair.torch_key] = np.array(3, np.int64)
        elif pair.rows is None:
            state[pair.torch_key] = rng.standard_normal(pair.torch_shape).astype(np.float32)
        else:
            shape = (pair.rows[2],) + pair.torch_shape[1:]
            state.setdefault(pair.torch_key, rng.standard_normal(shape).astype(np.float32))
    return state


def test_rules_invert_exactly_and_print_their_steps():
    rule = rules.chain(rules.transpose(1, 0), rules.reshape((6, 12), (6, 3, 4)))
    weight = np.arange(72, dtype=np.float64).reshape(12, 6) / 7
    assert str(rule) == "transpose(1, 0), reshape(6, 3, 4)"
    assert rule.to_framework(weight).shape == (6, 3, 4)
    assert np.array_equal(rule.to_torch(rule.to_framework(weight)), weight)
    assert rule.torch_shape((6, 3, 4)) == (12, 6)
    assert str(rules.Rule()) == "copy"
    with pytest.raises(ValueError, match="different numbers of elements"):
        rules.reshape((6,), (4,))
    with pytest.raises(ValueError, match="permutation"):
        rules.transpose(0, 0)


def test_describe_prints_one_line_per_pair_with_both_names_shapes_and_rule():
    lines = rules.describe(rules.plan([CONV, BN], "flax", MODULES)).splitlines()
    assert lines == [
        "features.0.weight (16, 1, 5, 5) -> conv1.kernel (5, 5, 1, 16): transpose(2, 3, 1, 0)",
        "features.0.bias (16,) -> conv1.bias (16,): copy",
        "features.1.weight (16,) -> bn1.scale (16,): copy",
        "features.1.bias (16,) -> bn1.bias (16,): copy",
        "features.1.running_mean (16,) -> bn1.mean (16,): copy",
        "features.1.running_var (16,) -> bn1.var (16,): copy",
        "features.1.num_batches_tracked () -> none: torch's BatchNorm counter; from_torch drops it, "
        "to_torch takes it from num_batches_tracked=",
    ]


def test_attention_pairs_rows_of_torch_packed_projection_with_each_head_kernel():
    pairs = rules.plan([ATTENTION], "flax")
    names = [(pair.torch_name, pair.framework_key) for pair in pairs]
    assert names[:3] == [("attn.in_proj_weight[0:8]", "attn.query.kernel"),
                         ("attn.in_proj_weight[8:16]", "attn.key.kernel"),
                         ("attn.in_proj_weight[16:24]", "attn.value.kernel")]
    assert str(pairs[0]) == ("attn.in_proj_weight[0:8] (8, 8) -> attn.query.kernel (8, 2, 4): "
                             "transpose(1, 0), reshape(8, 2, 4)")
    state = _torch_state(pairs)
    arrays = rules.from_torch_arrays("test", "flax", pairs, state)
    # the key projection's head 1, depth 2 is torch's row 8 + 1 * 4 + 2 = 14
    assert np.array_equal(arrays["attn.key.kernel"][:, 1, 2], state["attn.in_proj_weight"][14])
    back = rules.to_torch_arrays("test", "flax", pairs, arrays, None)
    assert back.keys() == state.keys() and all(np.array_equal(back[key], state[key]) for key in state)


def test_missing_projection_leaves_its_rows_of_the_packed_tensor_refused_by_name():
    layer = Layer("attn", "attention", {name: leaf for name, leaf in ATTENTION.leaves.items() if name != "key.bias"})
    pairs = rules.plan([layer], "flax")
    state = _torch_state(rules.plan([ATTENTION], "flax"))
    refusal = r"torch keys with no counterpart: \['attn.in_proj_bias\[8:16\]'\]; flax keys with no counterpart: \[\]"
    with pytest.raises(ValueError, match=refusal):
        rules.from_torch_arrays("test", "flax", pairs, state)
    arrays = {pair.framework_key: np.zeros(pair.framework_shape, np.float32) for pair in pairs}
    with pytest.raises(ValueError, match=r"attn.in_proj_bias\[8:16\]"):
        rules.to_torch_arrays("test", "flax", pairs, arrays, None)


def test_module_paths_map_by_prefix_by_function_or_else_stay_the_same():
    layers = [Layer("body.layers.0", "linear", {"kernel": _leaf(3, 2)}),
              Layer("head", "linear", {"kernel": _leaf(2, 1)})]
    by_prefix = rules.plan(layers, "flax", {"features": "body.layers"})
    assert [pair.torch_key for pair in by_prefix] == ["features.0.weight", "head.weight"]
    by_function = rules.plan(layers, "flax", lambda path: path.replace("body.layers", "trunk"))
    assert [pair.torch_key for pair in by_function] == ["trunk.0.weight", "head.weight"]
    at_root = rules.plan(layers[:1], "flax", {"": "body.layers"})
    assert [pair.torch_key for pair in at_root] == ["0.weight"]


def test_modules_naming_absent_or_shared_framework_modules_are_refused():
    with pytest.raises(ValueError, match=r"framework modules \['conv9'\] are not in the model"):
        rules.plan([CONV], "flax", {"features.0": "conv9"})
    with pytest.raises(ValueError, match="both map to framework module 'conv1'"):
        rules.plan([CONV], "flax", {"features.0": "conv1", "features.3": "conv1"})
    with pytest.raises(ValueError, match="paired with both conv1.kernel and conv2.kernel"):
        rules.plan([CONV, CONV._replace(path="conv2")], "flax", lambda path: "features.0")


def test_overrides_replace_a_rule_or_repair_a_key_and_unknown_keys_are_refused():
    layers = [Layer("fc", "linear", {"kernel": _leaf(24, 8), "bias": _leaf(8)})]
    hwc = rules.chain(rules.reshape((8, 24), (8, 6, 2, 2)), rules.transpose(0, 2, 3, 1),
                      rules.reshape((8, 2, 2, 6), (8, 24)), rules.transpose(1, 0))
    pairs = rules.plan(layers, "flax", overrides={"fc.kernel": hwc, "fc.bias": ("head.bias", rules.Rule())})
    assert [(pair.torch_key, str(pair.rule)) for pair in pairs] == [
        ("fc.weight", "reshape(8, 6, 2, 2), transpose(0, 2, 3, 1), reshape(8, 24), transpose(1, 0)"),
        ("head.bias", "copy")]
    weight = np.arange(8 * 24, dtype=np.float32).reshape(8, 24)
    kernel = hwc.to_framework(weight)
    # the kernel's row for (h, w, c) = (1, 0, 5) is torch's column c * 4 + h * 2 + w = 22
    assert np.array_equal(kernel[(1 * 2 + 0) * 6 + 5], weight[:, 22])
    assert np.array_equal(hwc.to_torch(kernel), weight)
    by_function = rules.plan(layers, "flax", overrides=lambda pair: hwc if pair.framework_key == "fc.kernel" else None)
    assert by_function[0].rule == hwc
    with pytest.raises(ValueError, match=r"framework keys \['fc.weight'\] are not in the model"):
        rules.plan(layers, "flax", overrides={"fc.weight": hwc})
    with pytest.raises(ValueError, match=r"overrides\['fc.bias'\].*cannot take shape \(8,\)"):
        rules.plan(layers, "flax", overrides={"fc.bias": rules.transpose(1, 0)})


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update({"features.2.weight": np.zeros(3, np.float32)}),
     r"torch keys with no counterpart: \['features.2.weight'\]; flax keys with no counterpart: \[\]"),
    (lambda s: s.pop("features.0.bias"),
     r"torch keys with no counterpart: \[\]; flax keys with no counterpart: \['conv1.bias'\]"),
    (lambda s: s.update({"features.0.weight": np.zeros((16, 2, 5, 5), np.float32)}),
     r"features.0.weight has shape \(16, 2, 5, 5\), but conv1.kernel \(5, 5, 1, 16\) needs \(16, 1, 5, 5\)"),
], ids=["extra torch key", "missing torch key", "shape"])
def test_from_torch_refuses_by_name(change, message):
    pairs = rules.plan([CONV, BN], "flax", MODULES)
    state = _torch_state(pairs)
    change(state)
    with pytest.raises(ValueError, match=message):
        rules.from_torch_arrays("test", "flax", pairs, state)


def test_counters_are_dropped_on_the_way_in_and_required_on_the_way_out():
    pairs = rules.plan([BN], "flax")
    state = _torch_state(pairs)
    arrays = rules.from_torch_arrays("test", "flax", pairs, state)
    assert sorted(arrays) == ["bn1.bias", "bn1.mean", "bn1.scale", "bn1.var"]
    refusal = r"a counter that flax does not: \['bn1.num_batches_tracked'\]; pass num_batches_tracked="
    with pytest.raises(ValueError, match=refusal):
        rules.to_torch_arrays("test", "flax", pairs, arrays, None)
    for given in (3, state, {"bn1.num_batches_tracked": np.int64(3)}):
        counter = rules.to_torch_arrays("test", "flax", pairs, arrays, given)["bn1.num_batches_tracked"]
        assert counter.dtype == np.int64 and counter.shape == () and counter == 3
    with pytest.raises(ValueError, match="non-negative integer"):
        rules.to_torch_arrays("test", "flax", pairs, arrays, 2.5)
    with pytest.raises(ValueError, match="num_batches_tracked has no 'bn1.num_batches_tracked'"):
        rules.to_torch_arrays("test", "flax", pairs, arrays, {})


def test_equinox_style_keeps_torch_layouts_but_shapes_conv_bias_per_channel():
    layers = [Layer("conv", "conv", {"weight": _leaf(16, 1, 5, 5), "bias": _leaf(16, 1, 1)}),
              Layer("attn", "attention", {"query_proj.weight": _leaf(8, 8), "key_proj.weight": _leaf(8, 8),
                                          "value_proj.weight": _leaf(8, 8), "output_proj.weight": _leaf(8, 8)})]
    lines = rules.describe(rules.plan(layers, "equinox")).splitlines()
    assert lines[:2] == ["conv.weight (16, 1, 5, 5) -> conv.weight (16, 1, 5, 5): copy",
                         "conv.bias (16,) -> conv.bias (16, 1, 1): reshape(16, 1, 1)"]
    assert lines[3] == "attn.in_proj_weight[8:16] (8, 8) -> attn.key_proj.weight (8, 8): copy"


def test_a_dtype_jax_would_change_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"conv1.kernel float64 -> float32.*jax.enable_x64\(True\)"):
        rules.check_kept_dtypes("test", {"conv1.kernel": np.zeros(2)}, {"conv1.kernel": np.zeros(2, np.float32)})


def test_importing_the_bridges_loads_no_framework():
    code = ("import sys, funcgrad.interop; "
            "loaded = [name for name in ('flax', 'equinox', 'torch') if name in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
