"""`Optimizer`: the base class every update rule builds on.

An optimizer owns a flat list of `Parameter` objects and, for each of them, a small state
dictionary: an integer ``step`` (how many updates this parameter has received) plus the moment
buffers its rule needs (``momentum_buffer``, ``exp_avg``, ...), each an array of the parameter's
shape and dtype. A subclass states its update rule in ``_update``; this class does the
bookkeeping around it:

* checking the arguments (what was expected, what came),
* checking every gradient before any parameter moves (nothing is half-applied),
* keeping the state buffers in the parameter's dtype (float32 or float64; ``Module.astype``
  may change it between steps),
* ``state_dict`` / ``load_state_dict`` in a checkpoint-friendly form: a flat ``dict`` from
  ``str`` to a number or a NumPy array, which ``np.savez`` stores without pickle.

Updates happen in place: ``p.data`` stays the same array object with the same dtype, so views
of it and the modules that hold it see the new values.
"""
import math
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np

from nn.parameter import Parameter

__all__ = ["Optimizer"]

#: The state buffers that sum or average squared gradients (Adam's, RMSprop's, Adagrad's):
#: a loaded one with a negative value (or NaN) would put NaN in a parameter at the next step.
_SUMS_OF_SQUARES = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


# --------------------------------------------------------------------------------------------
# argument checks shared by the optimizers, the schedulers and the clipping functions


def _real(owner, name, value, allow_inf=False):
    """``value`` as a finite Python float (or +-inf with ``allow_inf``); TypeError for a
    non-number, ValueError for nan or a refused inf."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{owner}: {name} must be {'a number' if allow_inf else 'finite'}, got {value!r}")
    return value


def _nonneg(owner, name, value, allow_inf=False):
    """``value`` as a float >= 0 (``math.inf`` too, with ``allow_inf``)."""
    value = _real(owner, name, value, allow_inf)
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return value


def _unit(owner, name, value, closed=False):
    """``value`` as a float in [0, 1) (or [0, 1] with ``closed``)."""
    value = _real(owner, name, value)
    if not (0.0 <= value < 1.0 or (closed and value == 1.0)):
        raise ValueError(f"{owner}: {name} must be in [0, {'1]' if closed else '1)'}, got {value!r}")
    return value


def _integer(owner, name, value, minimum):
    """``value`` as a Python int >= ``minimum``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value


def _flag(owner, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _label(i, p):
    return f"parameter #{i} ({p.name!r})" if p.name else f"parameter #{i}"


def _collect_params(params, owner, allow_empty=False, allow_single=False):
    """Turn ``params`` (any iterable of `Parameter`, consumed once) into a checked list.

    Raises TypeError for something that is not an iterable of `Parameter` and ValueError for an
    empty list (unless ``allow_empty``) or for a parameter listed twice: updating it twice per
    step would be a silent bug. A weight shared between layers is one `Parameter` object, listed
    once.
    """
    expected = "an iterable of Parameter (e.g. model.parameters())"
    if isinstance(params, Parameter):
        if allow_single:
            return [params]
        raise TypeError(f"{owner}: params must be {expected}, got a single Parameter; wrap it in a list")
    if isinstance(params, (np.ndarray, str, bytes, Mapping)):
        hint = "; pass its .values()" if isinstance(params, Mapping) else ""
        raise TypeError(f"{owner}: params must be {expected}, got {type(params).__name__}{hint}")
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{owner}: params must be {expected}, got {type(params).__name__}") from None

    by_param = {}
    for i, p in enumerate(items):
        if not isinstance(p, Parameter):
            hint = ""
            if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Parameter):
                hint = " (a (name, Parameter) pair: pass parameters(), not named_parameters())"
            elif isinstance(p, Mapping):
                hint = " (parameter groups are not supported: use one optimizer per group)"
            raise TypeError(f"{owner}: params[{i}] must be a Parameter, got {type(p).__name__}{hint}")
        if id(p) in by_param:
            j = by_param[id(p)]
            raise ValueError(f"{owner}: params[{i}] is the same Parameter as params[{j}] ({p.name!r}); "
                             f"each parameter must be listed once")
        j = next((j for j, q in enumerate(items[:i]) if np.shares_memory(p.data, q.data)), None)
        if j is not None:
            raise ValueError(f"{owner}: params[{i}] ({p.name!r}) and params[{j}] ({items[j].name!r}) hold "
                             f"the same memory (one array, or views of one); it would be updated "
                             f"twice per step")
        by_param[id(p)] = i
    if not items and not allow_empty:
        raise ValueError(f"{owner}: params is empty; expected {expected} with at least one Parameter")
    return items


# --------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: a list of parameters, a learning rate, per-parameter state.

    Parameters
    ----------
    params : iterable of Parameter
        Consumed once into the list ``self.params``. Each ``p.data`` is updated in place from
        ``p.grad`` (same shape and dtype). A parameter whose ``grad`` is None, or that is
        frozen (``requires_grad=False``), is skipped by ``step``.
    lr : float
        Learning rate, >= 0. ``opt.lr`` may be set at any time (schedulers do); the other
        hyperparameters are fixed at construction.

    Attributes
    ----------
    params : list of Parameter
    state : list of dict
        ``state[i]`` belongs to ``params[i]``: ``"step"`` (int, updates received) and the
        rule's buffers, each shaped like ``params[i].data``.
    track_updates : bool
        Set True to measure each step's relative update (costs a copy of every parameter
        per step; off by default).
    update_ratios : dict
        With ``track_updates``: ``id(parameter) -> ||delta theta|| / ||theta||`` of the last
        ``step`` -- the update-to-weight ratio that ``nn.inspect.gradient_report`` shows
        (healthy training typically sits near 1e-3); emptied by each ``step``, so it holds
        only the parameters that step updated while tracking.

    Subclasses set their hyperparameters, then call ``Optimizer.__init__``, and implement
    ``_init_state(p)`` (add buffers to the base ``{"step": 0}``) and ``_update(i, x, g, st)``
    (update ``x = params[i].data`` in place from ``g``; ``st["step"]`` already counts this
    update, so it is 1 on the first call).
    """

    #: names of the hyperparameters shown by ``repr`` and frozen after construction
    _hyper_names = ()

    def __init__(self, params, lr):
        name = type(self).__name__
        self.params = _collect_params(params, name)
        self.lr = lr
        self.state = [self._init_state(p) for p in self.params]
        # Scratch arrays per parameter, reused every step (not part of the state).
        self._work = [[] for _ in self.params]
        self.track_updates = False
        self.update_ratios = {}
        self._frozen = True

    # -- hyperparameters ---------------------------------------------------------------------

    @property
    def lr(self):
        """The learning rate used by the next ``step`` (a float >= 0; settable)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _nonneg(type(self).__name__, "lr", value)

    def __setattr__(self, name, value):
        if name in self._hyper_names and self.__dict__.get("_frozen", False):
            raise AttributeError(f"{type(self).__name__}.{name} is fixed at construction; "
                                 f"only lr can be changed (create a new optimizer for other settings)")
        object.__setattr__(self, name, value)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr",) + tuple(self._hyper_names))
        return f"{type(self).__name__}({hyper}; {len(self.params)} parameters)"

    # -- the update --------------------------------------------------------------------------

    def _init_state(self, p):
        return {"step": 0}

    def _update(self, i, x, g, st):
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def step(self):
        """Apply one update to every parameter that has a gradient.

        All gradients are checked first (shape and dtype equal to the parameter's) and every
        value to be writable; a mismatch raises before any parameter changes.
        """
        owner = type(self).__name__
        pending = []
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None or not p.requires_grad:
                continue
            if type(g) is not np.ndarray:        # a subclass (np.matrix) would fail midway
                raise TypeError(f"{owner}.step: {_label(i, p)} has a gradient of type "
                                f"{type(g).__name__}; expected a numpy.ndarray")
            if g.shape != p.data.shape:
                raise ValueError(f"{owner}.step: {_label(i, p)} has data of shape {p.data.shape} "
                                 f"but a gradient of shape {g.shape}")
            if g.dtype != p.data.dtype:
                raise TypeError(f"{owner}.step: {_label(i, p)} has data of dtype {p.data.dtype} "
                                f"but a gradient of dtype {g.dtype}")
            if not p.data.flags.writeable:        # made read-only after it was set (setflags)
                raise ValueError(f"{owner}.step: {_label(i, p)} has read-only data, which the "
                                 "update writes in place")
            self._sync_state(i)
            pending.append((i, p.data, g))
        self.update_ratios.clear()          # only this step's: none when not tracking
        for i, x, g in pending:
            st = self.state[i]
            st["step"] += 1
            before = x.copy() if self.track_updates else None
            self._update(i, x, g, st)
            if before is not None:
                norm = float(np.linalg.norm(before))
                change = float(np.linalg.norm(x - before))
                self.update_ratios[id(self.params[i])] = change / norm if norm else float("inf") if change else 0.0

    def zero_grad(self, set_to_none=False):
        """Set every parameter's gradient to zero (in place; the arrays are kept), or with
        ``set_to_none=True`` to None, as PyTorch does by default: ``step`` then skips a
        parameter whose module took no part in the next backward. A gradient that is None
        stays None: the next backward of its module starts it from zeros."""
        to_none = _flag(f"{type(self).__name__}.zero_grad", "set_to_none", set_to_none)
        for p in self.params:
            if to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.fill(0)

    # -- helpers for subclasses --------------------------------------------------------------

    def _sync_state(self, i):
        """Bring ``state[i]``'s buffers to the parameter's dtype (it may have been converted)."""
        p = self.params[i]
        st = self.state[i]
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                if v.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: {_label(i, p)} now has shape "
                                     f"{p.data.shape} but its state {k!r} has shape {v.shape}; "
                                     f"a parameter may not change shape under an optimizer")
                if v.dtype != p.data.dtype:
                    st[k] = v.astype(p.data.dtype)

    def _scratch(self, i, slot):
        """A reusable work array shaped like ``params[i].data`` (contents undefined)."""
        data = self.params[i].data
        work = self._work[i]
        while len(work) <= slot:
            work.append(None)
        buf = work[slot]
        if buf is None or buf.dtype != data.dtype or buf.shape != data.shape:
            buf = work[slot] = np.empty_like(data)
        return buf

    def _l2(self, i, x, g, weight_decay):
        """The gradient with L2 decay folded in: ``g + weight_decay * x`` (``g`` itself if 0).

        The result lives in scratch slot 0; ``p.grad`` is never modified.
        """
        if weight_decay == 0:
            return g
        out = self._scratch(i, 0)
        np.multiply(x, weight_decay, out=out)
        out += g
        return out

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self):
        """The optimizer's state as a flat dict of numbers and arrays (copies).

        Keys: ``"lr"`` (float), and for parameter ``i`` ``"state.{i}.step"`` (int) and
        ``"state.{i}.{buffer}"`` (array shaped like the parameter). The hyperparameters other
        than ``lr`` belong to the constructor call and are not stored.
        """
        out = {"lr": self._lr}
        for i, st in enumerate(self.state):
            self._sync_state(i)
            for k, v in st.items():
                out[f"state.{i}.{k}"] = v.copy() if isinstance(v, np.ndarray) else v
        return out

    def load_state_dict(self, state_dict):
        """Restore a state from ``state_dict()`` of an optimizer of the same kind and settings.

        Every key, number and shape is checked before anything changes: a missing or unexpected
        key or a buffer of the wrong shape raises ValueError and leaves the optimizer as it was.
        Numbers may come back as 0-d arrays (as ``np.load`` returns them). Buffers are copied
        into the existing arrays, cast to each parameter's dtype.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: expected a dict from state_dict(), got {type(state_dict).__name__}")
        for i in range(len(self.params)):
            self._sync_state(i)
        expected = {"lr"} | {f"state.{i}.{k}" for i, st in enumerate(self.state) for k in st}
        got = set(state_dict)
        if got != expected:
            missing = sorted(expected - got, key=str)
            unexpected = sorted(got - expected, key=str)
            raise ValueError(f"{owner}: the keys do not match this {type(self).__name__} over "
                             f"{len(self.params)} parameters; missing {missing[:8]}"
                             f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                             f"{' ...' if len(unexpected) > 8 else ''}")

        lr = _nonneg(owner, "'lr'", state_dict["lr"])
        updates = []
        for i, (p, st) in enumerate(zip(self.params, self.state)):
            for k, current in st.items():
                key = f"state.{i}.{k}"
                value = state_dict[key]
                if isinstance(current, np.ndarray):
                    if not isinstance(value, np.ndarray):
                        raise TypeError(f"{owner}: {key!r} must be an array of shape {current.shape}, "
                                        f"got {type(value).__name__}")
                    if value.shape != current.shape:
                        raise ValueError(f"{owner}: {key!r} has shape {value.shape}, expected "
                                         f"{current.shape} (the shape of {_label(i, p)})")
                    if not np.issubdtype(value.dtype, np.floating):
                        raise TypeError(f"{owner}: {key!r} must be a floating-point array, "
                                        f"got dtype {value.dtype}")
                    if k in _SUMS_OF_SQUARES and not np.all(value >= 0):    # NaN fails too
                        raise ValueError(f"{owner}: {key!r} accumulates squared gradients, so "
                                         f"holds values >= 0, got {value[~(value >= 0)].flat[0]}")
                else:
                    value = _integer(owner, repr(key), value, 0)
                updates.append((st, k, value))

        self._lr = lr
        for st, k, value in updates:
            if isinstance(value, np.ndarray):
                np.copyto(st[k], value, casting="same_kind")
            else:
                st[k] = value
