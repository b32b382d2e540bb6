"""``torch.optim`` and ``torch.optim.lr_scheduler`` in Optax terms, split as Optax splits itself:

- :mod:`~funcgrad.optim.aliases`: torch's optimizers (``sgd``, ``adam``, ``adamw``) as
  ``optax.GradientTransformation`` chains, torch's arguments and defaults, and
  ``param_groups`` (one optimizer, its groups with their own settings);
- :mod:`~funcgrad.optim.transforms`: the transformations Optax lacks, each with its state;
- :mod:`~funcgrad.optim.schedules`: torch's schedulers as schedules of the update count;
- :mod:`~funcgrad.optim.torch_state`: ``optimizer.state_dict()`` to these states and back.

    optimizer = fg.optim.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)
    optimizer = fg.optim.adamw(fg.optim.cosine_annealing_lr(1e-3, t_max=100))
"""

from funcgrad.optim.aliases import adam, adamw, param_groups, sgd
from funcgrad.optim.schedules import cosine_annealing_lr, step_lr
from funcgrad.optim.torch_state import state_from_torch, state_to_torch, torch_param_names
from funcgrad.optim.transforms import DampenedTraceState, TorchAdamState, dampened_trace, scale_by_torch_adam

__all__ = [
    "sgd", "adam", "adamw", "param_groups", "step_lr", "cosine_annealing_lr", "dampened_trace", "scale_by_torch_adam",
    "DampenedTraceState", "TorchAdamState", "state_from_torch", "state_to_torch", "torch_param_names",
]
