"""A BatchNorm + dropout CNN ported into Flax NNX and Equinox with Optax
(examples/port_into_flax_and_equinox.py) and a transformer into Flax NNX
(examples/port_a_transformer_into_flax.py): each honest port passes every synced step in both
dtypes; each framework default that differs from torch, planted back, is caught at step 0 with
the module named in both frameworks' names, and where the loss parts, at the first module whose
output differs; plain ``optax.adamw`` is judged for what it computes."""

import functools
import re
import runpy
import types
from pathlib import Path

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
nnx = pytest.importorskip("flax.nnx")
pytest.importorskip("torch")

import jax  # noqa: E402

import funcgrad as fg  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def namespace(name: str) -> types.SimpleNamespace:
    """An example's namespace, as running it defines it (nothing imports an example: test_examples.py)."""
    return types.SimpleNamespace(**runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=name))


example = namespace("port_into_flax_and_equinox")
transformer = namespace("port_a_transformer_into_flax")

STEPS = 8


@pytest.fixture
def compiled_without_optimizations():
    """A planted default is a port of its own, compiled afresh; what is judged is the verdict,
    not XLA's code (as in test_gpt_mutants.py): compiled without XLA's optimizations."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def nnx_net(**kwargs):
    return example.nnx_port(example.NnxNet(nnx.Rngs(0), **kwargs))


def eqx_net(**kwargs):
    return example.eqx_port(example.EqxNet(jax.random.key(0), **kwargs))


class NnxChannelsLastFlatten(example.NnxNet):
    """A port that flattens Flax's NHWC features as they are, not in torch's C, H, W order."""

    def __call__(self, x, key):
        h = x.transpose(0, 2, 3, 1)
        h = nnx.relu(self.bn1(self.conv1(h)))
        h = nnx.max_pool(nnx.relu(self.bn2(self.conv2(h))), (2, 2), (2, 2))
        return self.fc(example.dropout(h.reshape(len(x), -1), key))


@pytest.mark.parametrize("framework", ["nnx", "equinox"])
def test_each_honest_port_passes_every_synced_step_in_both_dtypes(framework):
    verdicts = example.prove(example.PORTS[framework](), example.batches(STEPS))
    for verdict in verdicts.values():
        assert verdict.passed and verdict.synced_steps == STEPS, verdict.summary
        assert verdict.summary.endswith("every synced step agrees (8 steps), and so do the whole runs")
        assert "forward/new 1.running_var (synced)" in {row.name for row in verdict.synced}


NNX_BATCH_NORM = functools.partial(example.NnxTorchBatchNorm)
EQX_BATCH_NORM = functools.partial(example.EqxTorchBatchNorm)
DEFAULTS = {
    # Flax's and Equinox's momentum weighs the old statistic: their default 0.99 is torch's 0.01
    "nnx momentum 0.99": (lambda: nnx_net(batch_norm=functools.partial(NNX_BATCH_NORM, momentum=0.99)),
                          "step 0: the forward pass's new 1.running_mean / bn1.norm.mean, new 1.running_var / "
                          "bn1.norm.var, new 4.running_mean / bn2.norm.mean, new 4.running_var / bn2.norm.var differ "
                          "(the loss agrees)"),
    "equinox momentum 0.99": (lambda: eqx_net(batch_norm=functools.partial(EQX_BATCH_NORM, momentum=0.99)),
                              "step 0: the forward pass's new 1.running_mean / bn1.norm.batch_state_index[0], "
                              "new 1.running_var / bn1.norm.batch_state_index[1], new 4.running_mean"),
    # both keep the biased batch variance; torch's running_var is unbiased
    "nnx biased running variance": (lambda: nnx_net(batch_norm=functools.partial(NNX_BATCH_NORM, unbiased=False)),
                                    "step 0: the forward pass's new 1.running_var / bn1.norm.var, new "
                                    "4.running_var / bn2.norm.var differ (the loss agrees)"),
    "equinox biased running variance": (
        lambda: eqx_net(batch_norm=functools.partial(EQX_BATCH_NORM, unbiased=False)),
        "step 0: the forward pass's new 1.running_var / bn1.norm.batch_state_index[1], new 4.running_var / "
        "bn2.norm.batch_state_index[1] differ (the loss agrees)"),
    # 'SAME' at stride 2 pads (0, 1) on an 8x8 image, torch's padding=1 pads (1, 1)
    "nnx 'SAME' padding at stride 2": (lambda: nnx_net(padding="SAME"),
                                       "step 0: the loss differs at the same weights (the forward pass); in float64 "
                                       "the forward pass parts at 0 / conv1 (output N off; the first module "
                                       "tapped)"),
    "equinox 'SAME' padding at stride 2": (lambda: eqx_net(padding="SAME"),
                                           "step 0: the loss differs at the same weights (the forward pass); in "
                                           "float64 the forward pass parts at 0 / conv1 (output N off; the first "
                                           "module tapped)"),
    # equinox's mode="ema" normalises a training batch with its running statistics
    "equinox mode='ema'": (lambda: eqx_net(batch_norm=functools.partial(EQX_BATCH_NORM, mode="ema")),
                           "step 0: the loss differs at the same weights (the forward pass); in float64 the "
                           "forward pass parts at 1 / bn1.norm (output N off; 0 / conv1 agrees)"),
}


@pytest.mark.parametrize("default", list(DEFAULTS))
def test_each_framework_default_planted_in_the_port_is_caught_at_step_0_module_named(default, compiled_without_optimizations):
    port, message = DEFAULTS[default]
    with pytest.raises(fg.ParityError) as caught:
        example.prove(port(), example.batches(1), ["float64"])
    said = re.sub(r"\(output [0-9.e+-]+ off", "(output N off", str(caught.value))  # the size: the bug's, not ours
    assert said.startswith(f"float64, {message}"), said


def test_the_honest_transformer_port_passes_every_synced_step_in_both_dtypes():
    port = transformer.nnx_port(transformer.NnxLM(nnx.Rngs(0)))
    for verdict in transformer.prove(port, transformer.batches(4)).values():
        assert verdict.passed and verdict.synced_steps == 4, verdict.summary


TRANSFORMER_DEFAULTS = {
    # Flax's LayerNorm epsilon is 1e-6, torch's 1e-5
    "LayerNorm epsilon 1e-6": ({"epsilon": 1e-6}, "the loss differs at the same weights (the forward pass); in "
                               "float64 the forward pass parts at layer.norm1 (output N off; tok, pos agree)"),
    # nnx.gelu is the tanh approximation by default: linear2's input differs, linear1's output agrees
    "tanh GELU": ({"approximate_gelu": True}, "the loss differs at the same weights (the forward pass); in float64 "
                  "the forward pass parts at layer.linear2 (output N off; tok, pos, layer.norm1, layer.self_attn, "
                  "layer.norm2, layer.linear1 agree)"),
    # nnx.Embed's output dtype is fixed at construction: the float64 step embeds in float32
    "nnx.Embed's dtype": ({"promote_dtype": None}, "the loss differs at the same weights (the forward pass); in "
                          "float64 the forward pass parts at layer.norm1 (output N off; tok, pos agree)"),
    # NNX's own attention_fn may run the softmax in float32 (jax.nn.dot_product_attention)
    "NNX's attention_fn": ({"attention_fn": None}, "the gradient of head.weight / head.kernel differs (also "
                           "layer.norm1.bias, layer.norm1.weight / layer.norm1.scale, "
                           "layer.self_attn.out_proj.weight / layer.self_attn.out.kernel"),
}


@pytest.mark.parametrize("default", list(TRANSFORMER_DEFAULTS))
def test_each_flax_transformer_default_planted_in_the_port_is_caught_at_step_0(default,
                                                                            compiled_without_optimizations):
    arguments, message = TRANSFORMER_DEFAULTS[default]
    with pytest.raises(fg.ParityError) as caught:
        transformer.prove(transformer.nnx_port(transformer.NnxLM(nnx.Rngs(0), **arguments)), transformer.batches(1),
                          ["float64"])
    said = re.sub(r"\(output [0-9.e+-]+ off", "(output N off", str(caught.value))
    assert said.startswith(f"float64, step 0: {message}"), said


def test_fc_is_named_after_every_module_before_it_agrees(compiled_without_optimizations):
    with pytest.raises(fg.ParityError, match=r"parts at 9 / fc \(output [0-9.e-]+ off; 0 / conv1, 1 / bn1.norm, "
                                             r"3 / conv2, 4 / bn2.norm agree\)"):
        example.prove(example.nnx_port(NnxChannelsLastFlatten(nnx.Rngs(0))), example.batches(1), ["float64"])


def test_plain_optax_adamw_passes_in_float64_and_float32_names_its_bias_correction(compiled_without_optimizations):
    """optax.scale_by_adam computes 1 - 0.999**t in float32: 9.9998713e-4 at t = 1, so the
    first steps are 6.4e-6 relative from torch's, which the zero-initialised BatchNorm biases
    (a new value of exactly -lr * sign(g)) show beside torch's float32 rounding."""
    port = example.PORTS["nnx"]()
    example.prove(port, example.batches(2), ["float64"], optimizer=example.plain_optax_adamw)
    with pytest.raises(fg.ParityError, match=r"^float32, step 0: the optimizer's new value of (9|4|1)\.bias / "
                                             r"(fc|bn2\.norm|bn1\.norm)\.bias differs .*\(loss and gradients agree\)"):
        example.prove(port, example.batches(2), ["float32"], optimizer=example.plain_optax_adamw)
    assert abs((1 - np.float32(0.999)) / 1e-3 - 1) > 1e-5


def test_the_taps_refuse_a_module_the_model_lacks_and_a_taps_argument_that_is_not_a_function():
    model = example.NnxNet(nnx.Rngs(0))
    taps = fg.interop.flax_nnx.taps(lambda m, batch: m(batch[0], batch[2]),
                                    lambda state_dict: fg.interop.flax_nnx.from_torch(
                                        model, state_dict, modules=example.nnx_modules(model)),
                                    {"0": "conv9"})
    state = {key: np.asarray(value) for key, value in example.INITIAL.items()}
    buffers = {key: value for key, value in state.items() if "running" in key or "num_batches" in key}
    params = {key: value for key, value in state.items() if key not in buffers}
    with pytest.raises(ValueError, match=r"modules: framework modules \['conv9'\] are not in the model"):
        taps(fg.from_state_dict(params), fg.state_dict.nested(buffers), example.batches(1)[0])
    port = example.PORTS["nnx"]()
    with pytest.raises(TypeError, match="jax_taps must be a function"):
        fg.compare_steps(port.loss, example.optimizer(), example.torch_setup, example.torch_loss,
                         example.batches(1), stateful=True, jax_taps={"0": "conv1"})
