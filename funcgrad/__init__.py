"""funcgrad: PyTorch's autograd and training idioms as pure JAX functions, and the verdict
that proves a port computes what its original computes.

    import funcgrad as fg
    params = fg.linear_init(jax.random.key(0), 2, 3)           # nn.Linear(2, 3)
    loss_fn = lambda p, b: fg.cross_entropy(fg.linear_apply(p, b[0]), b[1])
    optimizer = fg.optim.sgd(0.01, momentum=0.9)               # torch.optim.SGD
    params, opt_state, losses = fg.fit_full_batch(loss_fn, optimizer, params, optimizer.init(params), (x, y), 10_000)

The surface, by group:

- core: layers (``linear_*``, ``mlp_*``, ``to/from_state_dict``, ``split_buffers``, and
  ``fg.layers``: torch.nn's convolution, pooling, normalization, dropout, embedding and
  activations, composed as ``nn.Sequential``), losses, metrics,
  derivatives (``hvp``), training loops (``train_step``, ``fit_*``, ``loader_batches``),
  and ``fg.optim`` (torch's optimizers and schedulers in Optax terms);
- data: the tutorial datasets and MNIST;
- parallel: data-parallel sharding, and many models at once (``sweep``);
- parity: ``fg.parity``, the verdict engine: the assertion over two training runs
  (``fg.parity.runs``, also ``fg.porting``) and the step-synchronized verdict, every step
  replayed from torch's exact state (``fg.parity.steps``, also ``fg.stepwise``), their
  assertions re-exported here.
"""

# core
from funcgrad import interop, layers, optim  # interop loads flax and equinox only when called
from funcgrad.types import Batch, LossFn, Params
from funcgrad.derivatives import hvp
from funcgrad.losses import bce_with_logits, binary_cross_entropy, cross_entropy, mse_loss
from funcgrad.metrics import accuracy, predict_classes
from funcgrad.layers.linear import linear_apply, linear_init, mlp_apply, mlp_init
from funcgrad.state_dict import BUFFER_NAMES, from_state_dict, split_buffers, to_state_dict
from funcgrad.train import (
    EpochBatches,
    NonFiniteLossError,
    fit_epochs,
    fit_full_batch,
    fit_minibatches,
    loader_batches,
    shuffled_batch_indices,
    train_step,
)

# data
from funcgrad.data import (
    digits_as_mnist,
    gaussian_blobs,
    iris_first_two_features,
    linear_regression_data,
)
from funcgrad.mnist import MNIST_ENV_VAR, MnistError, download_mnist, load_mnist, mnist_cache_dir
from funcgrad.text import (
    TEXT_ENV_VAR, TextDataError, char_batch, char_batch_offsets, char_vocabulary, decode, download_tinyshakespeare,
    encode, load_text, shakespeare_excerpt, split_train_val, text_cache_dir,
)

# parallel
from funcgrad.parallel import batch_sharding, data_mesh, replicate, shard_batch_indices
from funcgrad.sweep import fit_full_batch_sweep, init_many, sweep_grid

# parity
from funcgrad import parity
from funcgrad.parity import runs as porting, steps as stepwise
from funcgrad.parity import (
    ParityError,
    StepVerdict,
    assert_same_run,
    assert_same_steps,
    assert_same_training,
    compare_steps,
    record_jax_run,
    record_torch_run,
)

__all__ = [
    # core
    "layers", "optim", "Batch", "LossFn", "Params", "hvp", "bce_with_logits", "binary_cross_entropy", "cross_entropy", "mse_loss",
    "accuracy", "predict_classes", "from_state_dict", "linear_apply", "linear_init", "mlp_apply",
    "mlp_init", "to_state_dict", "split_buffers", "BUFFER_NAMES", "EpochBatches", "NonFiniteLossError", "fit_epochs",
    "fit_full_batch", "fit_minibatches", "loader_batches", "shuffled_batch_indices", "train_step",
    # data
    "digits_as_mnist", "gaussian_blobs", "iris_first_two_features", "linear_regression_data",
    "MNIST_ENV_VAR", "MnistError", "download_mnist", "load_mnist", "mnist_cache_dir",
    "TEXT_ENV_VAR", "TextDataError", "char_batch", "char_batch_offsets", "char_vocabulary", "decode",
    "download_tinyshakespeare", "encode", "load_text", "shakespeare_excerpt", "split_train_val", "text_cache_dir",
    # parallel
    "batch_sharding", "data_mesh", "replicate", "shard_batch_indices", "fit_full_batch_sweep",
    "init_many", "sweep_grid",
    # parity
    "interop", "parity", "porting", "stepwise", "ParityError", "assert_same_run", "assert_same_training",
    "StepVerdict", "assert_same_steps", "compare_steps",
    "record_jax_run", "record_torch_run",
]
