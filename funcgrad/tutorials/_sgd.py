"""The seeds' full-batch loop, shared by their sections."""

import funcgrad as fg


def full_batch_sgd(loss_fn, params, batch, num_steps: int, lr: float):
    """``SGD(lr)`` on the whole ``batch`` for ``num_steps``; the trained params and every step's loss.

    >>> params, losses = full_batch_sgd(loss_fn, params, (x, y), 300, 0.1)
    """
    optimizer = fg.optim.sgd(lr)
    params, _, losses = fg.fit_full_batch(loss_fn, optimizer, params, optimizer.init(params), batch, num_steps)
    return params, losses
