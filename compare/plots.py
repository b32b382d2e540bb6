"""Pictures of a comparison: for each training case, the two float32 runs and the band between them.

    python -m compare --plots out/plots        # one PNG per training case, and out/plots/index.md

Top: the loss (or objective) at every step, JAX and PyTorch overlaid. Bottom, on a log
scale: |JAX − PyTorch|, each side's distance to the float64 run, and the band JAX's
distance must stay under (funcgrad/parity.py). For the sweep, the test accuracy of every
model against its learning rate, on both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcgrad import parity

MAX_POINTS = 250  # per error curve: more would be noise, not information


def histories(sides) -> dict:
    """The per-step quantities a case reports, by name."""
    return {name: value for name, value in sides.jax.items() if isinstance(value, parity.History)}


def plot_case(entry: dict, directory: Path) -> Path | None:
    """Write ``directory/NAME.png`` for a case with float32 histories; None for the others."""
    sides = entry.get("sides", {})
    if "float32" not in sides or not histories(sides["float32"]):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run, reference = sides["float32"], sides["reference"]
    panels = list(histories(run).items())
    extra = entry["name"] == "sweep-iris"
    fig = plt.figure(figsize=(6.5 * (len(panels) + extra), 7.5))
    grid = fig.add_gridspec(2, len(panels) + extra)
    for column, (name, jax_history) in enumerate(panels):
        torch_history = run.torch[name]
        _plot_values(fig.add_subplot(grid[0, column]), name, jax_history, torch_history)
        _plot_band(fig.add_subplot(grid[1, column]), name, jax_history, torch_history, reference[name])
    if extra:
        _plot_sweep_accuracy(fig.add_subplot(grid[:, -1]), run)
    report = entry["float32"]
    verdict = "ok" if report["passed"] else "FAIL"
    fig.suptitle(f"{entry['name']}, float32: {verdict}, worst {report['worst_band_ratio']:.2f}x the band")
    fig.tight_layout()
    path = Path(directory) / f"{entry['name']}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _steps_last(history: parity.History) -> np.ndarray:
    return np.moveaxis(np.atleast_1d(np.asarray(history.value, np.float64)), history.step_axis, -1)


def _plot_values(ax, name, jax_history, torch_history) -> None:
    jax_values, torch_values = _steps_last(jax_history), _steps_last(torch_history)
    steps = np.arange(jax_values.shape[-1])
    for i, (j, t) in enumerate(zip(jax_values.reshape(-1, len(steps)), torch_values.reshape(-1, len(steps)))):
        ax.plot(steps, t, color="tab:orange", lw=2.5, alpha=0.6, label="PyTorch" if i == 0 else None)
        ax.plot(steps, j, color="tab:blue", lw=1, ls="--", label="JAX (funcgrad)" if i == 0 else None)
    ax.set(title=f"{name} (float32)", xlabel="step", ylabel=name.split(" per ")[0])
    ax.legend()


def _plot_band(ax, name, jax_history, torch_history, reference) -> None:
    band = parity.band_per_step(jax_history, torch_history, reference, jax_history.step_axis)
    window = -(-len(band["allowed"]) // MAX_POINTS)  # long runs: the largest error per window of steps
    curves = {key: _window_max(values, window) for key, values in band.items()}
    steps = np.arange(len(curves["allowed"])) * window
    positive = np.concatenate([v[v > 0] for v in curves.values()])
    bottom = positive.min() / 3 if positive.size else 1e-12
    ax.fill_between(steps, bottom, curves["allowed"], color="tab:green", alpha=0.15,
                    label="band for |JAX − float64|")
    ax.plot(steps, curves["allowed"], color="tab:green", lw=1.2)
    for key, label, color in (("torch_err", "|PyTorch − float64|", "tab:orange"),
                              ("jax_err", "|JAX − float64|", "tab:blue"),
                              ("jax_vs_torch", "|JAX − PyTorch|", "dimgray")):
        ax.plot(steps, np.maximum(curves[key], bottom), color=color, lw=1, label=label)
    ax.set_ylim(bottom, positive.max() * 3 if positive.size else 1)
    per = "step" if window == 1 else f"{window} steps"
    ax.set(yscale="log", xlabel="step", ylabel=f"largest absolute error per {per}",
           title=f"{name}: float32 error against the band")
    ax.legend(fontsize=8, loc="best")


def _window_max(values: np.ndarray, window: int) -> np.ndarray:
    padded = np.pad(values, (0, -len(values) % window), constant_values=0.0)
    return padded.reshape(-1, window).max(axis=1)


def _plot_sweep_accuracy(ax, run) -> None:
    from compare.cases.sweep_iris import LEARNING_RATES, NUM_SEEDS

    shape = (NUM_SEEDS, len(LEARNING_RATES))
    for side, values, style in (("PyTorch", run.torch, dict(marker="o", ms=10, alpha=0.5, color="tab:orange")),
                                ("JAX (funcgrad)", run.jax, dict(marker="x", ms=8, color="tab:blue"))):
        accuracy = np.asarray(values["test accuracy"].value).reshape(shape)
        for seed in range(NUM_SEEDS):
            ax.plot(LEARNING_RATES, accuracy[seed], ls="none", label=side if seed == 0 else None, **style)
    ax.set(xscale="log", xlabel="learning rate", ylabel="test accuracy",
           title=f"{NUM_SEEDS} inits x {len(LEARNING_RATES)} learning rates")
    ax.legend()


def write_index(directory: Path, summary: list[str], images: list[Path]) -> Path:
    """``directory/index.md``: the run's summary lines, then every plot."""
    lines = ["# funcgrad comparison", "", "```", *summary, "```", ""]
    lines += [f"## {path.stem}\n\n![{path.stem}]({path.name})\n" for path in images]
    path = Path(directory) / "index.md"
    path.write_text("\n".join(lines))
    return path
