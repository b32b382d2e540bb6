"""Seed 000 afternoon, swept: 1000 Iris models (10 seeds x 100 learning rates) in one call.

The model, loss and 10 000 full-batch epochs of ``iris_softmax.py``, for every pair of
initial weights and learning rate, compiled once: ``vmap`` trains all of them together.
The best rate of each seed is picked on its final training loss, so the test set stays
unseen until the accuracy is reported.

    python examples/sweep_iris.py --plot sweep_iris_accuracy.png
"""

import argparse

import jax
import numpy as np

import funcgrad as fg
from funcgrad.tutorials import iris_softmax as port
from funcgrad.tutorials.sweep_iris import LEARNING_RATES, NUM_SEEDS, accuracy_of_each_model, compile_and_train


def plot_accuracy_vs_rate(learning_rates, accuracies, num_epochs: int, path: str) -> None:
    """One line per seed: test accuracy against learning rate, log x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(10, 6))
    for seed, seed_accuracies in enumerate(accuracies):
        plt.plot(learning_rates, 100 * seed_accuracies, label=f"seed {seed}", alpha=0.8)
    plt.xscale("log")
    plt.xlabel("Learning rate")
    plt.ylabel("Test accuracy (%)")
    plt.title(f"Iris softmax regression, {num_epochs} full-batch SGD epochs per model")
    plt.legend(ncol=2)
    plt.savefig(path, dpi=100)
    plt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed the initial weights are split from")
    parser.add_argument("--epochs", type=int, default=port.NUM_EPOCHS, help="full-batch epochs per model")
    parser.add_argument("--plot", default="sweep_iris_accuracy.png", help="PNG to write")
    args = parser.parse_args()

    iris = fg.iris_first_two_features()
    keys = jax.random.split(jax.random.key(args.seed), NUM_SEEDS)
    params, losses, compile_s, run_s = compile_and_train(
        keys, LEARNING_RATES, iris["x_train"], iris["y_train"], args.epochs
    )
    num_models = NUM_SEEDS * len(LEARNING_RATES)
    print(f"{num_models} models x {args.epochs} epochs: compiled in {compile_s:.1f} s, trained in {run_s:.1f} s")

    grid_shape = (NUM_SEEDS, len(LEARNING_RATES))
    final_losses = np.asarray(losses[:, -1]).reshape(grid_shape)
    accuracies = np.asarray(accuracy_of_each_model(params, iris["x_test"], iris["y_test"])).reshape(grid_shape)
    for seed in range(NUM_SEEDS):
        best = np.nanargmin(final_losses[seed])
        print(f"seed {seed}: best lr {LEARNING_RATES[best]:.4g}, final loss "
              f"{final_losses[seed, best]:.4f}, test accuracy {100 * accuracies[seed, best]:.2f}%")
    print(f"test accuracy over all {num_models} models: min {100 * accuracies.min():.2f}%, "
          f"median {100 * np.median(accuracies):.2f}%, max {100 * accuracies.max():.2f}%")
    print(f"models whose loss is not finite: {np.sum(~np.isfinite(final_losses))}")

    plot_accuracy_vs_rate(LEARNING_RATES, accuracies, args.epochs, args.plot)
    print(f"Accuracy against learning rate written to {args.plot}")


if __name__ == "__main__":
    main()
