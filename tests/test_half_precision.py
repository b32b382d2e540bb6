"""float16 and bfloat16 are refused, with a TypeError naming the argument and its dtype, at
every public function that takes params, data or a ``dtype`` — the functions docs/errors.md's
errors table names, no more and no fewer."""

import fnmatch
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcgrad as fg
from funcgrad import parity
from tests.conftest import REPO_ROOT

HALVES = pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])

KEY = jax.random.key(0)
PARAMS = fg.linear_init(KEY, 2, 3)
MLP = fg.mlp_init(KEY, (2, 4, 3))
X = jnp.ones((4, 2))
LABELS = jnp.array([0, 1, 2, 0])
SGD = optax.sgd(0.1)


def loss_fn(params, batch):
    x, labels = batch
    return fg.cross_entropy(fg.linear_apply(params, x), labels)


def cast(tree, dtype):
    """``tree`` with every float leaf in ``dtype`` (integer labels kept)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def stacked(params):
    return jax.tree.map(lambda leaf: leaf[None], params)


# (function, argument, call): call(dtype) hands ``dtype`` to that argument alone, so the
# same call in float32 must succeed.
ENTRIES = [
    ("linear_init", "dtype", lambda d: fg.linear_init(KEY, 2, 3, dtype=d)),
    ("linear_apply", "params", lambda d: fg.linear_apply(cast(PARAMS, d), X)),
    ("linear_apply", "x", lambda d: fg.linear_apply(PARAMS, X.astype(d))),
    ("mlp_init", "dtype", lambda d: fg.mlp_init(KEY, (2, 4, 3), dtype=d)),
    ("mlp_apply", "params", lambda d: fg.mlp_apply(cast(MLP, d), X)),
    ("mlp_apply", "x", lambda d: fg.mlp_apply(MLP, X.astype(d))),
    ("to_state_dict", "params", lambda d: fg.to_state_dict(cast(PARAMS, d))),
    ("from_state_dict", "state_dict", lambda d: fg.from_state_dict({"weight": np.ones((3, 2), d)})),
    ("mse_loss", "predictions", lambda d: fg.mse_loss(X.astype(d), X)),
    ("mse_loss", "targets", lambda d: fg.mse_loss(X, X.astype(d))),
    ("bce_with_logits", "logits", lambda d: fg.bce_with_logits(X.astype(d), X)),
    ("binary_cross_entropy", "probs", lambda d: fg.binary_cross_entropy(X.astype(d), X)),
    ("cross_entropy", "logits", lambda d: fg.cross_entropy(jnp.zeros((4, 3), d), LABELS)),
    ("cross_entropy", "weight", lambda d: fg.cross_entropy(jnp.zeros((4, 3)), LABELS, weight=jnp.ones(3, d))),
    ("predict_classes", "logits", lambda d: fg.predict_classes(jnp.zeros((4, 3), d))),
    ("accuracy", "logits", lambda d: fg.accuracy(jnp.zeros((4, 3), d), LABELS)),
    ("hvp", "params", lambda d: fg.hvp(lambda p: jnp.sum(p["weight"] ** 3), cast(PARAMS, d), PARAMS)),
    ("hvp", "vector", lambda d: fg.hvp(lambda p: jnp.sum(p["weight"] ** 3), PARAMS, cast(PARAMS, d))),
    ("train_step", "params", lambda d: fg.train_step(loss_fn, SGD, cast(PARAMS, d), SGD.init(PARAMS), (X, LABELS))),
    ("train_step", "batch", lambda d: fg.train_step(loss_fn, SGD, PARAMS, SGD.init(PARAMS), (X.astype(d), LABELS))),
    ("fit_full_batch", "params",
     lambda d: fg.fit_full_batch(loss_fn, SGD, cast(PARAMS, d), SGD.init(PARAMS), (X, LABELS), 2)),
    ("fit_full_batch", "batch",
     lambda d: fg.fit_full_batch(loss_fn, SGD, PARAMS, SGD.init(PARAMS), (X.astype(d), LABELS), 2)),
    ("fit_minibatches", "params",
     lambda d: fg.fit_minibatches(loss_fn, SGD, cast(PARAMS, d), SGD.init(PARAMS), (X, LABELS), np.array([[0, 1]]))),
    ("fit_minibatches", "data",
     lambda d: fg.fit_minibatches(loss_fn, SGD, PARAMS, SGD.init(PARAMS), (X.astype(d), LABELS), np.array([[0, 1]]))),
    ("fit_epochs", "params", lambda d: fg.fit_epochs(loss_fn, SGD, cast(PARAMS, d), SGD.init(PARAMS), (X, LABELS),
                                                     fg.loader_batches(KEY, 4, 3))),
    ("fit_epochs", "data", lambda d: fg.fit_epochs(loss_fn, SGD, PARAMS, SGD.init(PARAMS), (X.astype(d), LABELS),
                                                   fg.loader_batches(KEY, 4, 3))),
    ("sweep_grid", "stacked_params", lambda d: fg.sweep_grid(stacked(cast(PARAMS, d)), jnp.array([0.1]))),
    ("fit_full_batch_sweep", "stacked_params",
     lambda d: fg.fit_full_batch_sweep(loss_fn, optax.sgd, stacked(cast(PARAMS, d)), 0.1, (X, LABELS), 2)),
    ("fit_full_batch_sweep", "batch",
     lambda d: fg.fit_full_batch_sweep(loss_fn, optax.sgd, stacked(PARAMS), 0.1, (X.astype(d), LABELS), 2)),
    ("replicate", "tree", lambda d: fg.replicate((cast(PARAMS, d), X), fg.data_mesh())),
    ("batch_sharding", "params", lambda d: fg.batch_sharding(loss_fn, SGD, cast(PARAMS, d), SGD.init(PARAMS),
                                                             (X, LABELS), np.array([[0, 1]]))),
    ("batch_sharding", "data", lambda d: fg.batch_sharding(loss_fn, SGD, PARAMS, SGD.init(PARAMS),
                                                           (X.astype(d), LABELS), np.array([[0, 1]]))),
    ("iris_first_two_features", "dtype", lambda d: fg.iris_first_two_features(d)),
    ("linear_regression_data", "dtype", lambda d: fg.linear_regression_data(dtype=d)),
    ("gaussian_blobs", "dtype", lambda d: fg.gaussian_blobs(dtype=d)),
]
ENTRY_IDS = [f"{name}-{argument}" for name, argument, _ in ENTRIES]

# The rest of the public surface, and why half precision has no way in there.
NOT_APPLICABLE = {
    "layers": "its functions refuse a half dtype as these do (tests/test_layers_*.py)",
    "interop": "moves torch's arrays into a framework's model as they are, dtypes kept",
    "split_buffers": "sorts names", "BUFFER_NAMES": "names",
    "optim": "builds optimizers; their state follows the params, which the training functions check",
    "Batch": "a type", "LossFn": "a type", "Params": "a type",
    "EpochBatches": "integer indices", "loader_batches": "integer indices",
    "shuffled_batch_indices": "integer indices", "shard_batch_indices": "integer indices",
    "data_mesh": "devices",
    "init_many": "calls the user's init_fn (linear_init and mlp_init refuse a half dtype)",
    "digits_as_mnist": "uint8 images", "load_mnist": "uint8 images", "download_mnist": "files",
    "mnist_cache_dir": "a path", "MNIST_ENV_VAR": "a name",
    "TEXT_ENV_VAR": "a name", "TextDataError": "an error", "char_batch": "integer token ids",
    "char_batch_offsets": "integer offsets", "char_vocabulary": "characters", "encode": "characters to integers",
    "decode": "integers to characters", "download_tinyshakespeare": "files", "load_text": "text",
    "shakespeare_excerpt": "text", "split_train_val": "integer token ids", "text_cache_dir": "a path",
    "NonFiniteLossError": "an error", "MnistError": "an error", "ParityError": "an error",
    "parity": "the verdict engine: no parity rule for half precision (ValueError, docs/errors.md's next row)",
    "porting": "the assertions over two runs (ValueError, docs/errors.md's next row)",
    "assert_same_run": "ValueError, docs/errors.md's next row",
    "assert_same_training": "ValueError, docs/errors.md's next row",
    "record_jax_run": "its params go through to_state_dict",
    "record_torch_run": "records torch's own run",
    "stepwise": "a verdict over torch's steps", "assert_same_steps": "a verdict over torch's steps",
    "compare_steps": "a verdict over torch's steps",
    "StepVerdict": "a verdict's result",
}


def expected_message(name: str, argument: str, dtype) -> str:
    dtype_name = jnp.dtype(dtype).name
    if argument == "dtype":
        return rf"^{name}: dtype {dtype_name} is not supported; funcgrad computes in float32 or float64"
    return rf"^{name}: {argument}(\[\S*\])* has dtype {dtype_name}; funcgrad computes in float32 or float64"


@HALVES
@pytest.mark.parametrize("name, argument, call", ENTRIES, ids=ENTRY_IDS)
def test_half_precision_is_refused_naming_the_argument_and_its_dtype(name, argument, call, half):
    with pytest.raises(TypeError, match=expected_message(name, argument, half)):
        call(half)


@pytest.mark.parametrize("name, argument, call", ENTRIES, ids=ENTRY_IDS)
def test_the_same_call_in_float32_is_accepted(name, argument, call):
    jax.block_until_ready(call(jnp.float32))


@HALVES
def test_half_precision_is_refused_while_tracing_under_jit(half):
    with pytest.raises(TypeError, match=expected_message("linear_apply", "x", half)):
        jax.jit(fg.linear_apply)(PARAMS, X.astype(half))


def test_every_public_name_is_either_checked_or_takes_no_floats():
    checked = {name for name, _, _ in ENTRIES}
    assert checked <= set(fg.__all__) and not checked & set(NOT_APPLICABLE)
    unclassified = set(fg.__all__) - checked - set(NOT_APPLICABLE)
    assert not unclassified, f"add {sorted(unclassified)} to ENTRIES (a check) or to NOT_APPLICABLE (why none)"


def readme_row(first_cell: str) -> str:
    rows = [line for line in (REPO_ROOT / "docs" / "errors.md").read_text().splitlines()
            if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"docs/errors.md's table needs exactly one row starting {first_cell!r}"
    return rows[0]


def functions_named(row: str) -> set[str]:
    """The public names a row of docs/errors.md quotes, globs such as ``fit_*`` expanded."""
    quoted = re.findall(r"`([A-Za-z_][\w*.]*)`", row)
    return {name for pattern in quoted for name in fnmatch.filter(fg.__all__, pattern.removeprefix("fg."))}


def test_errors_page_names_exactly_the_functions_that_refuse_half_precision():
    row = readme_row("float16 or bfloat16 params, data or `dtype=`")
    assert "`TypeError`" in row
    assert functions_named(row) == {name for name, _, _ in ENTRIES}


@HALVES
def test_errors_page_parity_row_holds_the_verdicts_have_no_half_precision_rule(half):
    row = readme_row("float16 or bfloat16 results to judge")
    assert "`ValueError`" in row and functions_named(row) == {"assert_same_run", "assert_same_training"}
    run = {"loss per step": parity.History(np.ones(3, half))}
    with pytest.raises(ValueError, match="no parity rule"):
        parity.compare_results(run, run, half)
    with pytest.raises(ValueError):
        fg.assert_same_run(run, run)
    with pytest.raises(ValueError, match="no parity rule"):
        fg.assert_same_run(run, run, dtype=half)
    with pytest.raises(ValueError, match="no parity rule"):
        fg.assert_same_training(lambda dtype: run, lambda dtype: run, dtypes=[jnp.dtype(half).name])
