"""optim: optimizers, learning-rate schedules and gradient clipping for handprop.

Every optimizer takes an iterable of `nn.Parameter`, updates each ``p.data`` in place from
``p.grad`` (never changing its dtype or identity) with exactly PyTorch's ``torch.optim`` formula,
and has ``step()``, ``zero_grad()``, a settable ``lr`` and a pickle-free ``state_dict()``::

    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for xb, yb in loader:
            model.zero_grad()
            loss = loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            optim.clip_grad_norm(model.parameters(), max_norm=1.0)
            opt.step()
        sched.step()

Contents
--------
Optimizer                      base class (argument checks, state, checkpoints)
SGD                            momentum, Nesterov, dampening, L2 weight decay
Adam, AdamW                    L2 / decoupled weight decay, AMSGrad
RMSprop                        momentum, centered
Adagrad                        learning-rate decay
clip_grad_norm, clip_grad_value
LRScheduler, StepLR, CosineAnnealingLR
"""
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm, clip_grad_value
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .schedulers import CosineAnnealingLR, LRScheduler, StepLR
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
    "clip_grad_norm", "clip_grad_value",
    "LRScheduler", "StepLR", "CosineAnnealingLR",
]
