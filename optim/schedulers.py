"""Learning-rate schedules, stepped once per epoch: `StepLR`, `CosineAnnealingLR`.

A scheduler reads and writes ``optimizer.lr``. Constructing one records the optimizer's
current ``lr`` as ``base_lr`` and sets ``last_epoch = 0`` without changing the rate; each
``step()`` (call it after the epoch's ``optimizer.step()`` calls) advances ``last_epoch`` by one
and sets the rate for the next epoch::

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.CosineAnnealingLR(opt, T_max=30)
    for epoch in range(30):
        ...                 # batches: backward, opt.step()
        sched.step()

Both use PyTorch's recursive update (the new rate is computed from the current
``optimizer.lr``), so their rates equal ``torch.optim.lr_scheduler``'s to the last bit, and a
manual change of ``opt.lr`` carries through the schedule as it does there.
"""
import math
from collections.abc import Mapping

from .optimizer import Optimizer, _integer, _nonneg

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR"]


class LRScheduler:
    """Base class: owns the epoch counter; subclasses implement ``_next_lr()``.

    Attributes
    ----------
    optimizer : Optimizer
    base_lr : float
        ``optimizer.lr`` when the scheduler was created.
    last_epoch : int
        Number of ``step()`` calls so far (0 right after construction).
    """

    #: hyperparameter name -> checker(owner, name, value); stored in the state dict
    _hyper = {}

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr

    def _next_lr(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement _next_lr")

    def step(self):
        """Advance one epoch and set ``optimizer.lr`` to the rate for it. If that rate is not
        a valid one (a negative rate: the cosine's recursion from an ``lr`` set by hand below
        ``eta_min``), raise and stay at the current epoch."""
        self.last_epoch += 1
        try:
            self.optimizer.lr = self._next_lr()
        except ValueError as e:
            self.last_epoch -= 1
            raise ValueError(f"{type(self).__name__}.step: the next rate is invalid ({e}); "
                             f"the schedule stays at epoch {self.last_epoch}") from e
        self._last_lr = self.optimizer.lr

    def get_last_lr(self):
        """The rate set by the last ``step`` (or found at construction), as a one-item list
        like PyTorch's (one entry per parameter group; an `Optimizer` here has one)."""
        return [self._last_lr]

    def state_dict(self):
        """``{"last_epoch": int, "base_lr": float, "last_lr": float}`` plus the schedule's
        hyperparameters: numbers only. The learning rate itself is in the optimizer's state."""
        out = {"last_epoch": self.last_epoch, "base_lr": self.base_lr, "last_lr": self._last_lr}
        out.update({k: getattr(self, k) for k in self._hyper})
        return out

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``; checks every key and value before changing anything.

        It does not touch ``optimizer.lr``: restore the optimizer's own state for that.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: expected a dict from state_dict(), got {type(state_dict).__name__}")
        expected = {"last_epoch", "base_lr", "last_lr", *self._hyper}
        if set(state_dict) != expected:
            raise ValueError(f"{owner}: keys do not match; missing {sorted(expected - set(state_dict))}, "
                             f"unexpected {sorted(set(state_dict) - expected, key=str)}")
        new = {"last_epoch": _integer(owner, "'last_epoch'", state_dict["last_epoch"], 0),
               "base_lr": _nonneg(owner, "'base_lr'", state_dict["base_lr"]),
               "_last_lr": _nonneg(owner, "'last_lr'", state_dict["last_lr"])}
        for k, check in self._hyper.items():
            new[k] = check(owner, repr(k), state_dict[k])
        self.__dict__.update(new)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({hyper}; last_epoch={self.last_epoch}, lr={self._last_lr!r})"


def _positive_int(owner, name, value):
    return _integer(owner, name, value, 1)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    After epoch ``e`` (``last_epoch``)::

        lr <- lr * gamma      if e % step_size == 0, else unchanged     (e >= 1)

    so ``lr = base_lr * gamma ** (e // step_size)`` while nobody else sets ``optimizer.lr``
    (computed by repeated multiplication, as PyTorch does).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        >= 1, epochs between decays.
    gamma : float
        >= 0, the decay factor.
    """

    _hyper = {"step_size": _positive_int, "gamma": _nonneg}

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = _nonneg("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def _next_lr(self):
        lr = self.optimizer.lr
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the learning rate along a half cosine from ``base_lr`` to ``eta_min`` in
    ``T_max`` epochs (and back up in the next ``T_max``, periodically, if stepped further).

    The target is ``eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` at epoch
    ``e``. As in PyTorch, it is reached recursively from the current rate ``lr``::

        lr <- eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / (1 + cos(pi * (e - 1) / T_max))
        lr <- lr + (base_lr - eta_min) * (1 - cos(pi / T_max)) / 2     (if (e - 1 - T_max) % (2 T_max) == 0)

    (the second form where the first would divide by zero, at the bottom of the cosine). A rate
    that rounding leaves a hair below zero, back at a ``base_lr`` of 0, is set to 0 (PyTorch
    keeps the negative rate).

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        >= 1, half period in epochs.
    eta_min : float
        >= 0, the minimum rate.
    """

    _hyper = {"T_max": _positive_int, "eta_min": _nonneg}

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _nonneg("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer)

    def _next_lr(self):
        e, T, eta_min, lr = self.last_epoch, self.T_max, self.eta_min, self.optimizer.lr   # e >= 1
        if (e - 1 - T) % (2 * T) == 0:
            lr = lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        else:
            lr = ((1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
                  * (lr - eta_min) + eta_min)
        # Back at a base_lr of 0, the recursion's rounding, which grows as T_max**2, can land a
        # hair below it.
        return 0.0 if 0 > lr >= -1e-14 * T * T * max(self.base_lr, eta_min) else lr
