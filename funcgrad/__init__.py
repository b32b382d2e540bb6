"""funcgrad: PyTorch's autograd and logistic-regression idioms as pure JAX functions.

    import funcgrad as fg
    params = fg.linear_init(jax.random.key(0), 2, 3)           # nn.Linear(2, 3)
    loss_fn = lambda p, b: fg.cross_entropy(fg.linear_apply(p, b[0]), b[1])
    optimizer = optax.sgd(0.01)
    params, opt_state, losses = fg.fit_full_batch(loss_fn, optimizer, params, optimizer.init(params), (x, y), 10_000)
"""

from funcgrad.data import (
    digits_as_mnist,
    gaussian_blobs,
    iris_first_two_features,
    linear_regression_data,
)
from funcgrad.derivatives import hvp
from funcgrad.losses import bce_with_logits, binary_cross_entropy, cross_entropy, mse_loss
from funcgrad.metrics import accuracy, predict_classes
from funcgrad.mnist import MNIST_ENV_VAR, MnistError, download_mnist, load_mnist, mnist_cache_dir
from funcgrad.nn import from_state_dict, linear_apply, linear_init, to_state_dict
from funcgrad.parallel import batch_sharding, data_mesh, replicate, shard_batch_indices
from funcgrad.sweep import fit_full_batch_sweep, init_many, sweep_grid
from funcgrad.train import (
    NonFiniteLossError,
    fit_full_batch,
    fit_minibatches,
    shuffled_batch_indices,
    train_step,
)

__all__ = [
    "MNIST_ENV_VAR",
    "MnistError",
    "NonFiniteLossError",
    "accuracy",
    "batch_sharding",
    "bce_with_logits",
    "binary_cross_entropy",
    "cross_entropy",
    "data_mesh",
    "digits_as_mnist",
    "download_mnist",
    "fit_full_batch",
    "fit_full_batch_sweep",
    "fit_minibatches",
    "from_state_dict",
    "gaussian_blobs",
    "hvp",
    "init_many",
    "iris_first_two_features",
    "linear_apply",
    "linear_init",
    "linear_regression_data",
    "load_mnist",
    "mnist_cache_dir",
    "mse_loss",
    "predict_classes",
    "replicate",
    "shard_batch_indices",
    "shuffled_batch_indices",
    "sweep_grid",
    "to_state_dict",
    "train_step",
]
