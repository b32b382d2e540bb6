"""Port a CNN with BatchNorm and dropout into Flax NNX and into Equinox, with plain Optax, and
prove every step of each against the PyTorch original.

    python examples/port_into_flax_and_equinox.py [--steps N] [--framework nnx|equinox|both]

The original: ``nn.Sequential(Conv2d(1, 8, 3, stride=2, padding=1, bias=False), BatchNorm2d(8), ReLU(),
Conv2d(8, 16, 3, padding=1, bias=False), BatchNorm2d(16), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.25),
Linear(64, 10))`` on scikit-learn's 8x8 digits, AdamW whose weight decay spares biases and
BatchNorm (two param groups), gradients clipped to norm 1.0, batches of 32, in train mode.

The ports are what a Flax or Equinox user writes, with four choices made to match torch,
each a framework default that differs (tests/test_framework_ports.py plants each default back
and shows it caught at step 0, the module named):

- **BatchNorm momentum**: torch's 0.1 is the new batch's weight; Flax and Equinox weigh the
  old statistic, so torch's 0.1 is their ``momentum=0.9`` (their default, 0.99, is torch's 0.01).
- **BatchNorm's running variance**: torch keeps the unbiased batch variance (``n / (n - 1)``),
  Flax and Equinox the biased one; ``TorchBatchNorm`` adds the difference. Flax's
  ``use_fast_variance=True`` (E[x^2] - E[x]^2) is turned off, as torch computes the variance
  from the centred values. Equinox's BatchNorm is built with ``mode="batch"`` (its ``"ema"``
  mode normalises training batches with the running statistics, not the batch's).
- **Padding**: torch's ``padding=1`` at stride 2 pads one pixel on each side; ``'SAME'`` pads
  ``(0, 1)`` on an 8x8 image. The ports name torch's padding.
- **Dropout**: ``nnx.Dropout`` and ``eqx.nn.Dropout`` draw with ``jax.random.bernoulli`` in the
  default float, whose bits change with 64-bit mode, so a float32 step and its float64 twin
  would drop other units. The ports call ``fg.layers.dropout`` with the key the batch carries,
  and torch's own ``nn.Dropout`` replays those masks (``fg.layers.replay_dropout``).

Each step starts from torch's state, translated by the bridges (``fg.interop.flax_nnx``,
``fg.interop.equinox``) into the framework's names and layouts; the verdict judges the loss,
the new running statistics, every gradient and every optimizer field in torch's names, and
names both (``features.0.weight / conv1.kernel``) when one differs.
"""

from __future__ import annotations

import argparse
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import nnx
from sklearn.datasets import load_digits
from torch import nn

import funcgrad as fg
from funcgrad.interop import equinox as eqx_bridge
from funcgrad.interop import flax_nnx

digits = load_digits()
IMAGES, LABELS = (digits.images / 16.0)[:, None].astype(np.float32), digits.target  # (1 797, 1, 8, 8)
LEARNING_RATE, WEIGHT_DECAY, MAX_NORM, DROPOUT = 3e-3, 1e-2, 1.0, 0.25
DROPOUT_NAME = "8"  # the torch model's Dropout, as named_modules() names it


def torch_model() -> nn.Sequential:  # the original
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(16 * 2 * 2, 10))


torch.manual_seed(0)
INITIAL = {name: value.numpy().copy() for name, value in torch_model().state_dict().items()}  # float32


def torch_setup(dtype):
    """The original's model and AdamW (decay on the conv and linear weights only) in ``dtype``."""
    model = torch_model().to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in INITIAL.items()})
    decay = [p for name, p in model.named_parameters() if name in ("0.weight", "3.weight", "9.weight")]
    rest = [p for name, p in model.named_parameters() if name not in ("0.weight", "3.weight", "9.weight")]
    return model, torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                     {"params": rest, "weight_decay": 0.0}], lr=LEARNING_RATE)


def torch_loss(model, batch):  # the original's forward pass and loss, its Dropout replaying the port's masks
    x, y, key = batch
    with fg.layers.replay_dropout(model, key.numpy()):
        return F.cross_entropy(model(x), y)


def torch_clip(model):  # the original's loop clips between backward() and step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)


def batches(num_steps: int) -> list[tuple]:
    """Each step's (images, labels, dropout key data), in the order a DataLoader meets them."""
    order = fg.loader_batches(jax.random.key(1), len(LABELS), 32, num_epochs=3).in_order()[:num_steps]
    keys = jax.random.key_data(jax.random.split(jax.random.key(2), len(order)))
    return [(IMAGES[i], LABELS[i], np.asarray(key)) for i, key in zip(order, keys)]


def decayed(params):
    """AdamW's decay mask over the parameters, which arrive in torch's names: the conv and
    linear weights decay, biases and BatchNorm's affine parameters do not (torch's two groups)."""
    return {name: {leaf: name in ("0", "3", "9") and leaf == "weight" for leaf in layer}
            for name, layer in params.items()}


def optimizer():
    """``optax.adamw``'s chain, as a port writes it with Optax (torch's clip first, the decay
    masked), its Adam direction ``fg.optim.scale_by_torch_adam``: ``optax.scale_by_adam``
    computes the bias correction 1 - 0.999**t in float32, 1.3e-5 from torch's at t = 1, and
    the float32 verdict names it (tests/test_framework_ports.py; docs/porting.md)."""
    return optax.chain(fg.optim.clip_grad_norm(MAX_NORM), fg.optim.scale_by_torch_adam(),
                       optax.add_decayed_weights(WEIGHT_DECAY, mask=decayed),
                       optax.scale_by_learning_rate(LEARNING_RATE))


def plain_optax_adamw():
    """The same optimizer with Optax's own Adam: ``optax.adamw(mask=...)`` after the clip."""
    return optax.chain(fg.optim.clip_grad_norm(MAX_NORM),
                       optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, mask=decayed))


class Port(NamedTuple):
    """What the verdict takes from a port: its loss over torch's names, the port's name for
    each torch key, and its module outputs (to name the module where a forward pass parts)."""

    loss: Callable
    names: dict[str, str]
    taps: Callable


def dropout(h, key):
    return fg.layers.dropout(h, DROPOUT, key=fg.layers.layer_key(jax.random.wrap_key_data(key), DROPOUT_NAME),
                             train=True)


# ---- Flax NNX ----

class NnxTorchBatchNorm(nnx.Module):
    """``nnx.BatchNorm`` with torch's momentum and variance: two-pass, unbiased when kept."""

    def __init__(self, features: int, rngs: nnx.Rngs, momentum: float = 0.9, use_fast_variance: bool = False,
                 unbiased: bool = True):
        self.norm = nnx.BatchNorm(features, momentum=momentum, epsilon=1e-5, use_fast_variance=use_fast_variance,
                                  rngs=rngs)
        self.unbiased = unbiased

    def __call__(self, x):  # NHWC, in train mode
        y = self.norm(x)
        if self.unbiased:
            n = x.size // x.shape[-1]
            biased = jnp.var(x, axis=(0, 1, 2))
            self.norm.var[...] = self.norm.var[...] + (1 - self.norm.momentum) * biased / (n - 1)
        return y


class NnxNet(nnx.Module):
    """The port in Flax NNX: NHWC inside, torch's NCHW at the boundary and before flattening."""

    def __init__(self, rngs: nnx.Rngs, batch_norm=NnxTorchBatchNorm, padding=((1, 1), (1, 1))):
        self.conv1 = nnx.Conv(1, 8, (3, 3), strides=2, padding=padding, use_bias=False, rngs=rngs)
        self.bn1 = batch_norm(8, rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn2 = batch_norm(16, rngs=rngs)
        self.fc = nnx.Linear(16 * 2 * 2, 10, rngs=rngs)

    def __call__(self, x, key):
        h = x.transpose(0, 2, 3, 1)
        h = nnx.relu(self.bn1(self.conv1(h)))
        h = nnx.max_pool(nnx.relu(self.bn2(self.conv2(h))), (2, 2), (2, 2))
        h = h.transpose(0, 3, 1, 2).reshape(len(x), -1)  # torch's flatten order, C then H then W
        return self.fc(dropout(h, key))


def nnx_modules(model: NnxNet) -> dict[str, str]:
    """Which NNX module is which torch module (the BatchNorms inside their wrappers)."""
    inner = ".norm" if isinstance(model.bn1, NnxTorchBatchNorm) else ""
    return {"0": "conv1", "1": f"bn1{inner}", "3": "conv2", "4": f"bn2{inner}", "9": "fc"}


def nnx_port(model: NnxNet):
    """The NNX port's loss over torch's names (``stateful``: the running statistics go through),
    and the name of each torch key in the port."""
    modules = nnx_modules(model)

    def framework_loss(m, batch):
        x, y, key = batch
        return fg.cross_entropy(m(x, key), y), m  # the model after its training step holds the new statistics

    def load(state_dict):
        return flax_nnx.from_torch(model, state_dict, modules=modules)

    loss = fg.interop.torch_named_loss(
        framework_loss, load, lambda m, counts: flax_nnx.to_torch(m, modules=modules, num_batches_tracked=counts))
    return Port(loss, fg.interop.framework_names(flax_nnx.pairs(model, modules=modules)),
                flax_nnx.taps(framework_loss, load, modules))


# ---- Equinox ----

class EqxTorchBatchNorm(eqx.Module):
    """``eqx.nn.BatchNorm(mode="batch")`` with torch's momentum and unbiased running variance.
    Called per example inside ``jax.vmap(..., axis_name="batch")``, as Equinox's BatchNorm is."""

    norm: eqx.nn.BatchNorm
    unbiased: bool = eqx.field(static=True)

    def __init__(self, channels: int, momentum: float = 0.9, mode: str = "batch", unbiased: bool = True):
        self.norm = eqx.nn.BatchNorm(channels, "batch", eps=1e-5, momentum=momentum, mode=mode)
        self.unbiased = unbiased

    def __call__(self, x, state):  # (C, H, W)
        y, state = self.norm(x, state)
        if self.unbiased:
            mean = jax.lax.pmean(jnp.mean(x, axis=(1, 2)), "batch")
            biased = jax.lax.pmean(jnp.mean((x - mean[:, None, None]) ** 2, axis=(1, 2)), "batch")
            n = jax.lax.psum(1, "batch") * x.shape[1] * x.shape[2]
            index = self.norm.batch_state_index if self.norm.mode == "batch" else self.norm.ema_state_index
            running_mean, running_var = state.get(index)
            state = state.set(index, (running_mean, running_var + (1 - self.norm.momentum) * biased / (n - 1)))
        return y, state


class EqxNet(eqx.Module):
    """The port in Equinox: torch's layouts; the features per example (vmapped), the head on the batch."""

    conv1: eqx.nn.Conv2d
    bn1: EqxTorchBatchNorm
    conv2: eqx.nn.Conv2d
    bn2: EqxTorchBatchNorm
    fc: eqx.nn.Linear

    def __init__(self, key, batch_norm=EqxTorchBatchNorm, padding=1):
        keys = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 8, 3, stride=2, padding=padding, use_bias=False, key=keys[0])
        self.bn1 = batch_norm(8)
        self.conv2 = eqx.nn.Conv2d(8, 16, 3, padding=1, use_bias=False, key=keys[1])
        self.bn2 = batch_norm(16)
        self.fc = eqx.nn.Linear(16 * 2 * 2, 10, key=keys[2])

    def features(self, x, state):  # one (1, 8, 8) image -> 64 features
        h, state = self.bn1(self.conv1(x), state)
        h, state = self.bn2(self.conv2(jax.nn.relu(h)), state)
        h = eqx.nn.MaxPool2d(2, 2)(jax.nn.relu(h))
        return h.reshape(-1), state

    def __call__(self, x, state, key):  # a batch
        h, state = jax.vmap(self.features, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)
        return jax.vmap(self.fc)(dropout(h, key)), state


def eqx_modules(model: EqxNet) -> dict[str, str]:
    inner = ".norm" if isinstance(model.bn1, EqxTorchBatchNorm) else ""
    return {"0": "conv1", "1": f"bn1{inner}", "3": "conv2", "4": f"bn2{inner}", "9": "fc"}


def eqx_port(model: EqxNet):
    """The Equinox port's loss over torch's names, and the name of each torch key in the port."""
    state, modules = eqx.nn.State(model), eqx_modules(model)

    def framework_loss(module_and_state, batch):
        (module, state), (x, y, key) = module_and_state, batch
        logits, state = module(x, state, key)
        return fg.cross_entropy(logits, y), (module, state)

    def load(state_dict):
        return eqx_bridge.from_torch(model, state, state_dict, modules=modules)

    loss = fg.interop.torch_named_loss(
        framework_loss, load,
        lambda updated, counts: eqx_bridge.to_torch(*updated, modules=modules, num_batches_tracked=counts))
    return Port(loss, fg.interop.framework_names(eqx_bridge.pairs(model, state, modules=modules)),
                eqx_bridge.taps(framework_loss, load, modules))


PORTS = {"nnx": lambda: nnx_port(NnxNet(nnx.Rngs(0))), "equinox": lambda: eqx_port(EqxNet(jax.random.key(0)))}


def prove(port: Port, steps: list[tuple], dtypes=("float64", "float32"), optimizer=optimizer) -> dict:
    """Every step of the port judged against the original from torch's own state; a forward
    pass that differs is followed module by module to the first whose output differs."""
    return fg.assert_same_steps(port.loss, optimizer(), torch_setup, torch_loss, steps, dtypes, stateful=True,
                                torch_after_backward=torch_clip, framework_names=port.names, jax_taps=port.taps)


def report_plain_optax(port: Port, steps: list[tuple]) -> None:
    """What the verdict says of plain ``optax.adamw``: float64 passes; float32 names the
    optimizer's new values where Optax's float32 bias correction shows."""
    verdicts = fg.compare_steps(port.loss, plain_optax_adamw(), torch_setup, torch_loss, steps, stateful=True,
                                torch_after_backward=torch_clip, framework_names=port.names)
    for verdict in verdicts.values():
        print(f"plain optax.adamw: {verdict.summary}")
        for row in verdict.synced:
            if not row.passed:
                print(f"  {row.name}: {row.max_abs_err:.2g} off; JAX {row.jax_ref_err:.2g} from its float64 step, "
                      f"torch {row.torch_ref_err:.2g} from its; {row.band_ratio:.2f}x the band; {row.note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument("--framework", choices=["nnx", "equinox", "both"], default="both")
    parser.add_argument("--plain-optax", action="store_true",
                        help="also judge the NNX port with plain optax.adamw (Optax's own Adam) and print the rows")
    args = parser.parse_args()
    every_step = batches(args.steps)
    for framework in (["nnx", "equinox"] if args.framework == "both" else [args.framework]):
        port = PORTS[framework]()
        print(f"{framework}: " + ", ".join(f"{key} = {name}" for key, name in port.names.items()))
        for verdict in prove(port, every_step).values():
            print(f"{framework}: {verdict.summary}")
    if args.plain_optax:
        report_plain_optax(PORTS["nnx"](), every_step)
