"""A port written in Equinox or Flax NNX with plain Optax, judged step by step in torch's names
(fg.interop.torch_named_loss): the honest port passes in both dtypes; Optax's clip without
torch's epsilon is named at step 0 by the optimizer's field."""

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
nnx = pytest.importorskip("flax.nnx")
torch = pytest.importorskip("torch")

import jax  # noqa: E402
import optax  # noqa: E402

import funcgrad as fg  # noqa: E402
from funcgrad.interop import equinox as eqx_bridge  # noqa: E402
from funcgrad.interop import flax_nnx, torch_named_loss  # noqa: E402

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(24, 6)).astype(np.float32), RNG.integers(0, 3, 24)
BATCHES = [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 24, 8)]
torch.manual_seed(0)
INITIAL = {name: value.numpy().copy() for name, value in
           torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).state_dict().items()}


def torch_setup(dtype, clip=None):
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in INITIAL.items()})
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)


def torch_loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.fc1, self.fc2 = nnx.Linear(6, 5, rngs=rngs), nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.numpy.tanh(self.fc1(x)))


def nnx_port():
    model = NnxNet(nnx.Rngs(0))
    modules = {"0": "fc1", "2": "fc2"}
    return torch_named_loss(lambda m, batch: fg.cross_entropy(m(batch[0]), batch[1]),
                            lambda state_dict: flax_nnx.from_torch(model, state_dict, modules=modules))


def equinox_port():
    model = eqx.nn.Sequential([eqx.nn.Linear(6, 5, key=jax.random.key(0)), eqx.nn.Lambda(jax.numpy.tanh),
                               eqx.nn.Linear(5, 3, key=jax.random.key(1))])
    state = eqx.nn.State(model)
    modules = {"0": "layers.0", "2": "layers.2"}

    def forward(m, batch):
        return fg.cross_entropy(jax.vmap(m)(batch[0]), batch[1])
    return torch_named_loss(forward, lambda state_dict: eqx_bridge.from_torch(model, state, state_dict,
                                                                             modules=modules)[0])


PORTS = pytest.mark.parametrize("port", [nnx_port, equinox_port], ids=["flax-nnx", "equinox"])


@PORTS
def test_a_port_in_its_framework_with_plain_optax_passes_every_step_in_both_dtypes(port):
    verdicts = fg.assert_same_steps(port(), optax.adamw(1e-2, weight_decay=1e-2), torch_setup, torch_loss, BATCHES)
    for verdict in verdicts.values():
        assert verdict.passed and verdict.synced_steps == 3, verdict.summary
        assert "gradient/0.weight (synced)" in {row.name for row in verdict.synced}


@PORTS
def test_optax_clip_without_torchs_epsilon_is_named_by_the_optimizers_field(port):
    clipped = optax.chain(optax.clip_by_global_norm(0.1), optax.adamw(1e-2, weight_decay=1e-2))
    with pytest.raises(fg.ParityError, match=r"float64, step 0: the optimizer's (mu|nu) of .* differs"):
        fg.assert_same_steps(port(), clipped, torch_setup, torch_loss, BATCHES, dtypes=["float64"],
                             torch_after_backward=clip)
    honest = optax.chain(fg.optim.clip_grad_norm(0.1), optax.adamw(1e-2, weight_decay=1e-2))
    fg.assert_same_steps(port(), honest, torch_setup, torch_loss, BATCHES, dtypes=["float64"],
                         torch_after_backward=clip)


def test_torch_named_loss_refuses_what_is_not_a_function():
    with pytest.raises(TypeError, match="framework_loss and load must be functions, got int and function"):
        torch_named_loss(1, lambda state_dict: state_dict)
