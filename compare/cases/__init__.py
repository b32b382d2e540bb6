"""The comparison cases, one module per section of the source material, in seed order.

Each module has ``NAME``, ``SOURCE`` and ``run(ctx) -> (jax_results, torch_results[, info])``,
or instead ``setup(ctx) -> args`` with ``jax_side(*args)`` and ``torch_side(ctx, *args)``, or
``synced(ctx) -> kwargs`` of :func:`funcgrad.compare_steps` (judged step by step from torch's state);
optionally ``READS_MNIST`` or ``READS_TEXT`` (the tests then give it real MNIST or tinyshakespeare), ``data_name(ctx)`` (the report names its data) and ``timed(ctx) -> Timed`` (its
sides for ``python -m compare.bench``). This dict is the one registry: the CLI, the bench, the
mutants and the tests all read it.
"""

from compare.cases import (
    char_gpt,
    data_parallel_mnist,
    digits_mlp_synced,
    jacobian_hessian,
    newton_logistic,
    per_example_grads,
    binary_logistic,
    grad_mean,
    grad_poly_trig,
    iris_softmax,
    linear_regression,
    mnist_batch_64,
    mnist_cnn,
    mnist_mlp,
    mnist_softmax,
    one_sample_logistic,
    sweep_iris,
    torch_optimizers,
    vjp_and_stop_gradient,
)

CASES = {
    module.NAME: module
    for module in (
        grad_mean,
        grad_poly_trig,
        vjp_and_stop_gradient,
        iris_softmax,
        linear_regression,
        binary_logistic,
        mnist_softmax,
        one_sample_logistic,
        sweep_iris,
        jacobian_hessian,
        newton_logistic,
        per_example_grads,
        data_parallel_mnist,
        torch_optimizers,
        mnist_batch_64,
        mnist_mlp,
        digits_mlp_synced,
        mnist_cnn,
        char_gpt,
    )
}
