"""Seed 000 afternoon: multinomial logistic regression on Iris's first two features.

``nn.Linear(2, 3)`` + ``CrossEntropyLoss`` + ``SGD(lr=0.01)`` for 10 000 full-batch epochs.
The seed's Python loop of zero_grad/backward/step becomes one ``lax.scan`` compiled once.

    python examples/iris_softmax.py --plot iris_decision_boundary.png
"""

import argparse

import jax
import numpy as np

import funcgrad as fg
from funcgrad.tutorials.iris_softmax import NUM_EPOCHS, init_params, logits, train


def plot_decision_boundary(params: dict, x, y, path: str) -> None:
    """The seed's decision-boundary figure, written to ``path`` instead of shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    step = 0.01
    xx, yy = np.meshgrid(
        np.arange(x[:, 0].min() - 1, x[:, 0].max() + 1, step),
        np.arange(x[:, 1].min() - 1, x[:, 1].max() + 1, step),
    )
    mesh = np.c_[xx.ravel(), yy.ravel()].astype(x.dtype)
    classes = np.asarray(fg.predict_classes(logits(params, mesh))).reshape(xx.shape)

    cmap = ListedColormap(["#FF0000", "#00FF00", "#0000FF"])
    plt.figure(figsize=(10, 8))
    plt.contourf(xx, yy, classes, cmap=cmap, alpha=0.7)
    plt.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, edgecolor="black")
    plt.xlabel("Sepal length")
    plt.ylabel("Sepal width")
    plt.title("Decision Boundary")
    plt.savefig(path, dpi=100)
    plt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the initial weights")
    parser.add_argument("--plot", default="iris_decision_boundary.png", help="PNG to write")
    args = parser.parse_args()

    iris = fg.iris_first_two_features()
    params, losses = train(init_params(jax.random.key(args.seed)), iris["x_train"], iris["y_train"])
    for epoch in range(99, NUM_EPOCHS, 100):
        print(f"Epoch [{epoch + 1}/{NUM_EPOCHS}], Loss: {losses[epoch]:.4f}")

    test_accuracy = fg.accuracy(logits(params, iris["x_test"]), iris["y_test"])
    print(f"Accuracy on the test set: {100 * test_accuracy:.2f}%")
    plot_decision_boundary(params, iris["x_test"], iris["y_test"], args.plot)
    print(f"Decision boundary written to {args.plot}")


if __name__ == "__main__":
    main()
