"""``torch.optim`` and ``torch.optim.lr_scheduler`` in Optax terms, split as Optax splits itself:

- :mod:`~funcgrad.optim.aliases`: torch's optimizers (``sgd``, ``adam``, ``adamw``) as
  ``optax.GradientTransformation`` chains, torch's arguments and defaults, and
  ``param_groups`` (one optimizer, its groups with their own settings);
- :mod:`~funcgrad.optim.transforms`: the transformations Optax lacks, each with its state
  (torch's momentum with dampening, Adam's float32 bias corrections, ``clip_grad_norm_``);
- :mod:`~funcgrad.optim.schedules`: torch's schedulers as schedules of the update count
  (StepLR, CosineAnnealingLR, LambdaLR, LinearLR, MultiStepLR, ExponentialLR,
  CosineAnnealingWarmRestarts, SequentialLR, OneCycleLR and its momentum);
- :mod:`~funcgrad.optim.torch_state`: ``optimizer.state_dict()`` to these states and back.

    optimizer = fg.optim.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)
    optimizer = fg.optim.adamw(fg.optim.cosine_annealing_lr(1e-3, t_max=100))
"""

from funcgrad.optim.aliases import adam, adamw, param_groups, sgd
from funcgrad.optim.schedules import (
    cosine_annealing_lr,
    cosine_annealing_warm_restarts,
    exponential_lr,
    lambda_lr,
    linear_lr,
    multi_step_lr,
    one_cycle_lr,
    one_cycle_momentum,
    sequential_lr,
    step_lr,
)
from funcgrad.optim.torch_state import state_from_torch, state_to_torch, torch_param_names
from funcgrad.optim.transforms import (
    DampenedTraceState,
    TorchAdamState,
    clip_grad_norm,
    dampened_trace,
    scale_by_torch_adam,
)

__all__ = [
    "sgd", "adam", "adamw", "param_groups", "step_lr", "cosine_annealing_lr", "lambda_lr", "linear_lr",
    "multi_step_lr", "exponential_lr", "cosine_annealing_warm_restarts", "sequential_lr", "one_cycle_lr",
    "one_cycle_momentum", "clip_grad_norm", "dampened_trace", "scale_by_torch_adam",
    "DampenedTraceState", "TorchAdamState", "state_from_torch", "state_to_torch", "torch_param_names",
]
