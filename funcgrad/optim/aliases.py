"""``torch.optim``'s optimizers as Optax chains, with torch's arguments and defaults.

Where plain Optax already computes what torch computes, the optimizer *is* plain Optax
(``optax.sgd``); the rest is Optax's building blocks chained in torch's order, with
:mod:`funcgrad.optim.transforms` where Optax lacks or computes otherwise:

- **dampening** of SGD's momentum buffer (``buf = momentum * buf + (1 - dampening) * g``,
  except on the first step, where torch sets ``buf = g``);
- **Adam's bias corrections in float32**: torch computes ``1 - β^t`` in Python floats
  (double); ``optax.scale_by_adam`` in the parameters' dtype, where ``1 - 0.999^t``
  cancels: at t = 1 it is off by 1.3e-5 relative in float32. In the torch-optimizers
  case that put ``optax.adam``'s parameters 14x further from the float64 run than torch's
  own float32 run (6.2e-6 against 4.6e-7), out of the error model's band from step 6;
- **torch's AMSGrad**: torch keeps the running maximum of the *raw* second moment and
  bias-corrects after; ``optax.amsgrad`` bias-corrects first, ``max(v_t / (1 - β2^t))``,
  a different (larger) denominator from the second step on.

The constructors are memoized: the same arguments (of the same types) give the same
transformation object, so a loop compiled with one (``jit`` takes the optimizer as a static
argument, keyed by identity) is reused when a training function builds its optimizer
again, instead of compiled anew each call. A memoized transformation is the code as it was
when first built: after patching what a constructor calls, ``sgd.cache_clear()`` (and
``jax.clear_caches()`` for the loops compiled with it).

Every configuration is proven step by step against torch (``python -m compare --case
torch-optimizers``; tests/test_optim.py).

    optimizer = sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)
    optimizer = adamw(fg.optim.step_lr(1e-3, step_size=30, gamma=0.1))   # StepLR, one step per update
"""

from __future__ import annotations

import functools
import inspect
from typing import Union

import jax
import optax

from funcgrad import _checks
from funcgrad.optim.transforms import dampened_trace, scale_by_torch_adam

LearningRate = Union[float, optax.Schedule]


def _memoized(constructor):
    """``constructor`` returning one transformation per distinct arguments, so that ``jit``,
    which keys a static optimizer on its identity, compiles a loop once for them.

    The key is the arguments as the signature binds them (defaults filled in), each leaf
    with its type: ``sgd(0.1)`` is ``sgd(learning_rate=0.1, momentum=0.0)``, but not
    ``sgd(np.float64(0.1))``, which computes its update in float64 under x64. A schedule
    is a leaf keyed by identity. An unhashable argument (a jax array) builds a fresh
    transformation each call. ``cache_clear()`` empties the cache, as ``functools``'.
    """
    signature = inspect.signature(constructor)
    built = {}

    @functools.wraps(constructor)
    def build(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        leaves, structure = jax.tree.flatten(bound.arguments)
        key = (structure, tuple((type(leaf), leaf) for leaf in leaves))
        try:
            return built[key]
        except TypeError:  # unhashable
            return constructor(*args, **kwargs)
        except KeyError:
            return built.setdefault(key, constructor(*args, **kwargs))

    build.cache_clear = built.clear
    return build


@_memoized
def sgd(
    learning_rate: LearningRate,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov, maximize=...)``.

    Without dampening, weight decay or maximize this is ``optax.sgd`` itself.

    >>> optimizer = sgd(0.1, momentum=0.9, nesterov=True)
    >>> opt_state = optimizer.init(params)
    """
    if nesterov and ((not callable(momentum) and momentum <= 0) or dampening != 0):
        raise ValueError("sgd: Nesterov momentum requires a momentum and zero dampening (as in torch)")
    _checks.check_non_negative("sgd", learning_rate=learning_rate, momentum=momentum, dampening=dampening,
                               weight_decay=weight_decay)
    if not (dampening or weight_decay or maximize or callable(momentum)):  # a cycled momentum: torch's own trace
        return optax.sgd(learning_rate, momentum or None, nesterov)
    return optax.chain(
        *_torch_gradient_prelude(maximize, weight_decay),
        *([dampened_trace(momentum, dampening, nesterov)] if momentum else []),
        optax.scale_by_learning_rate(learning_rate),
    )


@_memoized
def adam(
    learning_rate: LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam``: ``weight_decay`` is L2, added to the gradient before the moments.

    The direction is :func:`scale_by_torch_adam`, not ``optax.scale_by_adam`` (see the
    module doc: Optax's float32 bias corrections).

    >>> optimizer = adam(1e-3, weight_decay=1e-2, amsgrad=True)
    """
    return _adam("adam", learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled=False)


@_memoized
def adamw(
    learning_rate: LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: decoupled decay, ``p -= lr * weight_decay * p`` beside the Adam step.

    torch's default ``weight_decay`` is 1e-2, Optax's 1e-4: this follows torch. The chain
    is ``optax.adamw``'s, with :func:`scale_by_torch_adam` for its direction.

    >>> optimizer = adamw(1e-3)
    """
    return _adam("adamw", learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)


def _adam(what, learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled) -> optax.GradientTransformation:
    """Adam's chain in torch's order: the L2 term joins the gradient (Adam) or the decay
    joins the step beside the Adam direction (AdamW, as ``optax.adamw`` chains it)."""
    _checks.check_non_negative(what, learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    scheduled_b1 = isinstance(betas, (tuple, list)) and len(betas) == 2 and callable(betas[0])
    b1, b2 = _checks.check_betas(what, (0.0, betas[1]) if scheduled_b1 else betas)
    b1 = betas[0] if scheduled_b1 else b1  # OneCycleLR's cycled beta1: fg.optim.one_cycle_momentum
    return optax.chain(
        *_torch_gradient_prelude(maximize, 0.0 if decoupled else weight_decay),
        scale_by_torch_adam(b1, b2, eps, amsgrad=amsgrad),
        *([optax.add_decayed_weights(weight_decay)] if decoupled else []),
        optax.scale_by_learning_rate(learning_rate),
    )


def _torch_gradient_prelude(maximize: bool, weight_decay: float) -> list[optax.GradientTransformation]:
    """What torch does to a gradient first: negate it (maximize), then add ``weight_decay * p``."""
    return ([optax.scale(-1.0)] if maximize else []) + (
        [optax.add_decayed_weights(weight_decay)] if weight_decay else [])


# torch's names in a param group, and the constructors' argument each one is.
_GROUP_KEYS = {"lr": "learning_rate"}


def param_groups(optimizer, groups, **defaults) -> optax.GradientTransformation:
    """One optimizer whose parameter groups have their own settings, as torch's
    ``optimizer(groups, **defaults)`` builds one:

        torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                           {"params": no_decay, "weight_decay": 0.0}], lr=6e-4, betas=(0.9, 0.95))

    is ``param_groups(fg.optim.adamw, [{"params": lambda name, p: p.ndim >= 2, "weight_decay": 0.1},
    {"params": lambda name, p: p.ndim < 2, "weight_decay": 0.0}], learning_rate=6e-4,
    betas=(0.9, 0.95))`` (nanoGPT's groups). Each group's ``"params"`` is a list of
    ``state_dict`` names or a predicate ``(name, array) -> bool``; its other keys override
    ``defaults`` for it, by the constructor's argument names or torch's (``lr``). Every
    parameter must fall in exactly one group (torch refuses a parameter in two groups; a
    parameter in none would not be trained): the first call of ``init`` or ``update`` says
    which does not. Underneath it is ``optax.multi_transform``: each group's optimizer sees
    only its own parameters, and its state holds only theirs.

    >>> optimizer = param_groups(fg.optim.adamw, [{"params": ["0.weight"], "weight_decay": 0.1},
    ...                                           {"params": ["0.bias"], "weight_decay": 0.0}], learning_rate=1e-3)
    """
    what = "param_groups"
    if not callable(optimizer):
        raise TypeError(f"{what}: optimizer must be an fg.optim constructor (fg.optim.adamw, ...), got {optimizer!r}")
    if not isinstance(groups, (list, tuple)) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ValueError(f"{what}: groups must be a non-empty list of dicts, each with a 'params' entry, got {groups!r}")
    transforms, selectors = {}, []
    for index, group in enumerate(groups):
        if "params" not in group:
            raise ValueError(f"{what}: group {index} has no 'params' (a list of state_dict names, or a predicate "
                             f"(name, array) -> bool)")
        settings = {_GROUP_KEYS.get(key, key): value for key, value in group.items() if key != "params"}
        try:
            transforms[str(index)] = optimizer(**(defaults | settings))
        except TypeError as error:
            raise TypeError(f"{what}: group {index}: {error}") from None
        selectors.append(group["params"])
    return optax.multi_transform(transforms, functools.partial(_group_labels, what, selectors))


def _group_labels(what: str, selectors: list, params):
    """Each parameter's group, ``"0"``, ``"1"``...: refuses a parameter in none or in two groups,
    and a name no parameter has."""
    from funcgrad.state_dict import nested

    leaves = {".".join(str(key.key) for key in path): leaf
              for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    for index, selector in enumerate(selectors):
        if not callable(selector):
            unknown = sorted(set(selector) - leaves.keys())
            if unknown:
                raise ValueError(f"{what}: group {index} names {unknown}, which are not parameters "
                                 f"(the parameters: {sorted(leaves)})")
    labels, problems = {}, []
    for name, leaf in leaves.items():
        chosen = [str(i) for i, selector in enumerate(selectors)
                  if (selector(name, leaf) if callable(selector) else name in selector)]
        if len(chosen) != 1:
            problems.append(f"{name} is in {'no group' if not chosen else 'groups ' + ', '.join(chosen)}")
        labels[name] = chosen[0] if chosen else "0"
    if problems:
        raise ValueError(f"{what}: every parameter must be in exactly one group, as in torch: {'; '.join(problems)}")
    return nested(labels)
