"""The training loop: ``fit`` and ``evaluate``.

``fit`` is the loop every example writes by hand, with a progress bar and a history::

    for epoch in range(epochs):
        for xb, yb in train_data:
            model.zero_grad()
            loss = loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            optimizer.step()
"""
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from .checks import check_flag, check_size
from .losses import CrossEntropyLoss
from .module import eval_mode, expect_module, modes_restored


def _accuracy_counts(loss_fn, logits, y):
    """(correct, counted) for class predictions, or None when the loss isn't a classifier's."""
    if not isinstance(loss_fn, CrossEntropyLoss):
        return None
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating):     # class probabilities: the likeliest class, everywhere
        y, valid = y.argmax(axis=-1), np.ones(y.shape[:-1], bool)
    else:
        valid = y != loss_fn.ignore_index
    correct = (logits.argmax(axis=-1) == y) & valid
    return int(correct.sum()), int(valid.sum())


class _Tally:
    """Running sums over the batches of an epoch: the loss as ``sum of per-element losses /
    their count`` (whatever the batches' sizes and ignored targets; a loss without ``count``,
    not an ``nn`` loss, counts as a mean over the batch's samples) and the accuracy."""

    def __init__(self):
        self.total = self.n = self.correct = self.counted = self.batches = 0

    def add(self, loss_fn, loss, logits, yb):
        count = getattr(loss_fn, "count", None)
        if count is None:
            batch_total, count = float(loss) * len(yb), len(yb)
        elif getattr(loss_fn, "reduction", "mean") == "mean":
            batch_total = float(loss) * count if count else 0.0     # all ignored: the mean is NaN
        else:
            batch_total = float(np.sum(loss))
        self.total += batch_total
        self.n += count
        counts = _accuracy_counts(loss_fn, logits, yb)
        if counts:
            self.correct, self.counted = self.correct + counts[0], self.counted + counts[1]
        self.batches += 1

    @property
    def loss(self):
        return self.total / self.n if self.n else float("nan")

    @property
    def accuracy(self):
        return self.correct / self.counted if self.counted else None


def _is_array_pair(data, owner):
    """Whether ``data`` is an ``(x, y)`` pair of arrays (rather than an iterable of batches);
    a 2-tuple holding one array and something else is neither, and raises."""
    if not (isinstance(data, tuple) and len(data) == 2):
        return False
    arrays = [isinstance(a, np.ndarray) for a in data]
    if any(arrays) and not all(arrays):
        raise TypeError(f"{owner}: expected data as an (x, y) pair of numpy arrays or an iterable "
                        f"of (xb, yb) batches, got a pair of ({type(data[0]).__name__}, "
                        f"{type(data[1]).__name__})")
    return all(arrays)


def _check_data(data, owner, name="data", passes=1):
    """Refuse, before any work, data that cannot be batches: an ``(x, y)`` pair of arrays of
    unequal lengths, a list of arrays (``[x, y]``, which would be read as batches), an array
    or anything else not iterable, and -- when it is read ``passes`` > 1 times -- an iterator
    (a generator), which the first pass would use up."""
    expected = f"{owner}: expected {name} as an (x, y) tuple of arrays or an iterable of (xb, yb) batches"
    if _is_array_pair(data, owner):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"{owner}: expected {name} as x and y with the same number of samples, "
                             f"got {len(x)} and {len(y)}")
    elif isinstance(data, list) and data and all(isinstance(a, np.ndarray) for a in data):
        raise TypeError(f"{expected}, got a list of {len(data)} arrays (pass tuple(...))")
    elif isinstance(data, np.ndarray) or not isinstance(data, Iterable):
        raise TypeError(f"{expected}, got {type(data).__name__}")
    elif passes > 1 and isinstance(data, Iterator):
        raise TypeError(f"{expected} that can be read {passes} times (a list, a DataLoader), got "
                        f"{type(data).__name__}, which one pass uses up")


def _check_equal_batches(model, data, batch_size, owner, name="data"):
    """A stateful recurrent layer carries its state from batch to batch, which needs batches
    of one size: refuse, before any work, data whose last batch would be shorter than the
    ones before it."""
    if not _stateful_layers(model):
        return
    if _is_array_pair(data, owner):
        n, size, where = len(data[0]), batch_size, f"batch_size={batch_size}"
    elif hasattr(data, "n_samples") and not getattr(data, "drop_last", True):    # a DataLoader
        n, size = data.n_samples, data.batch_size
        where = f"its batch_size={size} (or drop_last=True)"
    else:
        return
    if n > size and n % size:
        raise ValueError(f"{owner}: a stateful recurrent layer carries its state from batch to batch, "
                         f"which needs batches of one size: expected the {n} samples of {name} to "
                         f"be a multiple of {where}")


def _check_model_and_loss(owner, model, loss_fn):
    expect_module(owner, model)
    _needs(owner, "loss_fn", loss_fn, "backward", "an nn loss")


def _needs(owner, name, value, method, what):
    if isinstance(value, type):
        raise TypeError(f"{owner}: expected {name} to be {what}, got the class {value.__name__}; "
                        f"pass an instance, {value.__name__}(...)")
    if not callable(getattr(value, method, None)):
        raise TypeError(f"{owner}: expected {name} to be {what} (with a {method}() method), "
                        f"got {type(value).__name__}")


def _batches(data, batch_size, owner):
    """Iterate ``data``: an ``(x, y)`` pair of arrays is cut into consecutive batches;
    anything else (a ``DataLoader``, a list of pairs) is iterated as it is."""
    if _is_array_pair(data, owner):
        x, y = data
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    for number, batch in enumerate(data, 1):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            got = (f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list))
                   else type(batch).__name__)
            raise TypeError(f"{owner}: expected each batch to be an (xb, yb) pair, got {got} as "
                            f"batch {number} (whole data sets go in as one (x, y) tuple of numpy arrays)")
        yield batch


def _num_batches(data, batch_size):
    if _is_array_pair(data, "fit"):
        return -(-len(data[0]) // batch_size)
    return len(data) if hasattr(data, "__len__") else None


def _stateful_layers(model):
    """The recurrent layers of ``model`` that carry their state from call to call."""
    return [m for m in model.modules() if getattr(m, "stateful", False)]


@contextmanager
def _fresh_carried_states(model):
    """Stateful recurrent layers start from zeros inside, and carry on afterwards from the
    state they held before."""
    stateful = _stateful_layers(model)
    held = [m.carried_state for m in stateful]
    for m in stateful:
        m.reset_state()
    try:
        yield
    finally:
        for m, state in zip(stateful, held):
            m.carried_state = state


@contextmanager
def _undone_before_first_step(model):
    """Yields ``run``; unless ``run.stepped`` was set, a failure puts back what the attempt
    changed -- the buffers (BatchNorm's running statistics), the gradients and the state of
    stateful layers -- so that a mistake found in the first batch (a loss that does not fit
    the model's output, say) leaves the model as it was."""
    buffers = [(m, name, b.copy()) for m in model.modules() for name, b in m._buffers.items()
               if b is not None]
    grads = [(p, None if p.grad is None else p.grad.copy()) for p in model.parameters()]
    stateful = _stateful_layers(model)
    carried = [m.carried_state for m in stateful]
    run = SimpleNamespace(stepped=False)
    try:
        yield run
    except BaseException:
        if not run.stepped:
            for m, name, b in buffers:
                setattr(m, name, b)
            for p, g in grads:
                p.grad = g
            for m, state in zip(stateful, carried):
                m.carried_state = state
        raise


def evaluate(model, loss_fn, data, batch_size=256):
    """Loss and accuracy (for ``CrossEntropyLoss``) of ``model`` on ``data`` -- an ``(x, y)``
    pair or an iterable of batches -- in eval mode: the loss is the mean over every
    per-element loss of the data (every counted target; NaN if none counts), as one batch
    holding all the data would give. The model's previous mode of every module is restored
    afterwards, and so is the state its stateful recurrent layers carry: evaluation starts
    them from zeros, carries their state from batch to batch (consecutive chunks of the same
    sequences), then puts back the one training had reached. An ``(x, y)`` pair is run in
    batches of ``batch_size`` (memory, not the result, depends on it). Returns
    ``{"loss": float, "accuracy": float|None}``."""
    batch_size = check_size("evaluate", "batch_size", batch_size)
    _check_model_and_loss("evaluate", model, loss_fn)
    _check_data(data, "evaluate")
    _check_equal_batches(model, data, batch_size, "evaluate")
    tally = _Tally()
    with eval_mode(model), _fresh_carried_states(model):
        for xb, yb in _batches(data, batch_size, "evaluate"):
            logits = model(xb)
            tally.add(loss_fn, loss_fn(logits, yb), logits, yb)
    if tally.batches == 0:
        raise ValueError("evaluate: the data yielded no batches")
    return {"loss": tally.loss, "accuracy": tally.accuracy}


def fit(model, loss_fn, optimizer, train_data, epochs, val_data=None, batch_size=64,
        scheduler=None, before_step=None, progress=True):
    """Train ``model`` for ``epochs`` passes over ``train_data``.

    Parameters
    ----------
    model : Module
    loss_fn : a loss from ``nn`` (``CrossEntropyLoss`` also gives accuracies)
    optimizer : an optimizer from ``optim`` over the model's parameters
    train_data : iterable of ``(xb, yb)``, or an ``(x, y)`` pair of arrays
        Re-iterated every epoch, e.g. ``datasets.DataLoader(x, y, 64, shuffle=True, seed=0)``
        (shuffled); a plain ``(x, y)`` pair is cut into ``batch_size`` batches in order.
    epochs : int
        Passes over ``train_data``, >= 1.
    val_data : ``(x, y)`` or iterable of batches, optional
        Evaluated after each epoch with ``evaluate`` (an ``(x, y)`` pair in batches of
        ``batch_size``).
    batch_size : int
        Batch size for data given as an ``(x, y)`` pair (default 64); batches from an
        iterable are taken as they come.
    scheduler : object with ``step()``, optional
        Stepped once per epoch (``optim.StepLR``, ``optim.CosineAnnealingLR``).
    before_step : callable, optional
        Called after each backward, before ``optimizer.step()`` -- e.g.
        ``lambda: optim.clip_grad_norm(model.parameters(), 1.0)``.
    progress : bool
        Show a tqdm progress bar per epoch.

    The model trains in training mode: a model in eval mode is switched for the run, while
    submodules of a training model kept in eval (a frozen BatchNorm) stay so; afterwards every
    module has its own mode back. Stateful recurrent layers start each epoch from zeros (the
    data starts over) and carry their state from batch to batch, which needs batches of one
    size. A loss that is not finite stops the run with a ``FloatingPointError`` before that
    batch's step, so the parameters hold the last finite step's values. A failure before the
    first step (a loss that does not fit the model's output) leaves the model as it was:
    its buffers, gradients and carried states are put back.

    Returns
    -------
    dict of lists, one entry per epoch: ``loss``, ``accuracy`` (training, averaged over the
    epoch's per-element losses and targets as the batches were seen), ``val_loss``,
    ``val_accuracy`` (when ``val_data``), ``time`` (seconds of training per epoch, evaluation
    excluded).
    """
    from tqdm.auto import tqdm      # imported here: the rest of nn needs only numpy
    epochs = check_size("fit", "epochs", epochs)
    batch_size = check_size("fit", "batch_size", batch_size)
    _check_fit_arguments(model, loss_fn, optimizer, train_data, val_data, epochs, batch_size,
                         scheduler, before_step, progress)
    history = {"loss": [], "accuracy": [], "time": []}
    if val_data is not None:
        history.update(val_loss=[], val_accuracy=[])
    with modes_restored(model), _undone_before_first_step(model) as run:
        if not model.training:
            model.train()
        for epoch in range(epochs):
            start = time.perf_counter()
            tally = _train_epoch(model, loss_fn, optimizer, train_data, batch_size, before_step,
                                 epoch + 1, epochs, progress, run)
            history["time"].append(time.perf_counter() - start)
            history["loss"].append(tally.loss)
            history["accuracy"].append(tally.accuracy)
            if scheduler is not None:
                scheduler.step()
            if val_data is not None:
                try:
                    val = evaluate(model, loss_fn, val_data, batch_size)
                except (ValueError, TypeError) as e:      # say which data, and when
                    raise type(e)(f"fit: val_data, after epoch {epoch + 1}: {e}") from e
                history["val_loss"].append(val["loss"])
                history["val_accuracy"].append(val["accuracy"])
            if progress:
                tqdm.write(_epoch_line(epoch, epochs, history))
    return history


def _train_epoch(model, loss_fn, optimizer, train_data, batch_size, before_step, epoch, epochs, progress,
                 run):
    """Epoch ``epoch`` (from 1): one pass over ``train_data``, one optimizer step per batch
    (each sets ``run.stepped``); returns the epoch's tally."""
    from tqdm.auto import tqdm
    for m in _stateful_layers(model):               # the data starts over, so does the state
        m.reset_state()
    tally = _Tally()
    with tqdm(_batches(train_data, batch_size, "fit"), total=_num_batches(train_data, batch_size),
              desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress) as bar:
        for batch, (xb, yb) in enumerate(bar):
            model.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            # (a batch whose every target is ignored has a NaN mean and zero gradients, as in PyTorch)
            if not np.all(np.isfinite(loss)) and getattr(loss_fn, "count", None) != 0:
                raise FloatingPointError(
                    f"fit: the loss of epoch {epoch}, batch {batch + 1} is {loss}; that "
                    "batch took no step (the parameters hold the previous step's values)")
            model.backward(loss_fn.backward())
            if before_step is not None:
                before_step()
            optimizer.step()
            run.stepped = True
            tally.add(loss_fn, loss, logits, yb)
            bar.set_postfix(loss=f"{tally.loss:.4f}", refresh=False)
    if tally.batches == 0:
        raise ValueError(f"fit: epoch {epoch} got no batches from train_data (with "
                         "drop_last, a batch_size larger than the data gives none)")
    return tally


def _check_fit_arguments(model, loss_fn, optimizer, train_data, val_data, epochs, batch_size,
                         scheduler, before_step, progress):
    """Everything ``fit`` can check before its first step, so that a mistake costs no training."""
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is not None or name == "train_data":
            _check_data(data, "fit", name, passes=epochs)
    _check_val_like_train(train_data, val_data)
    _check_model_and_loss("fit", model, loss_fn)
    _needs("fit", "optimizer", optimizer, "step", "an optimizer")
    _check_optimizer_updates_model(model, optimizer)
    if scheduler is not None:
        _needs("fit", "scheduler", scheduler, "step", "a scheduler")
        if getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise ValueError("fit: the scheduler sets the learning rate of another optimizer than "
                             "the one given; build it over this optimizer")
    if before_step is not None and not callable(before_step):
        raise TypeError(f"fit: expected before_step to be callable or None, got {type(before_step).__name__}")
    check_flag("fit", "progress", progress)
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if data is not None:
            _check_equal_batches(model, data, batch_size, "fit", name)


def _check_val_like_train(train_data, val_data):
    """``(x, y)`` validation samples unlike the training ones would fail only after an epoch."""
    if val_data is None or not (_is_array_pair(train_data, "fit") and _is_array_pair(val_data, "fit")):
        return
    (x, y), (xv, yv) = train_data, val_data
    if (xv.shape[1:], xv.dtype, yv.shape[1:]) != (x.shape[1:], x.dtype, y.shape[1:]):
        raise ValueError(f"fit: expected val_data samples like train_data's, x {x.shape[1:]} of "
                         f"{x.dtype} and y {y.shape[1:]}, got x {xv.shape[1:]} of {xv.dtype} and "
                         f"y {yv.shape[1:]}")


def _check_optimizer_updates_model(model, optimizer):
    """An optimizer built over other parameters (another model's, or this one's before a
    ``copy.deepcopy``) would train nothing, silently."""
    params = getattr(optimizer, "params", None)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if isinstance(params, list) and trainable and not trainable & {id(p) for p in params}:
        raise ValueError("fit: the optimizer updates none of the model's trainable parameters "
                         "(it was built over other ones, e.g. another model's or this one's before "
                         "a copy); build it over model.parameters()")


def _epoch_line(epoch, epochs, history):
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {history['loss'][-1]:.4f}"]
    if history["accuracy"][-1] is not None:
        parts.append(f"acc {history['accuracy'][-1]:.4f}")
    if "val_loss" in history:
        parts.append(f"val_loss {history['val_loss'][-1]:.4f}")
        if history["val_accuracy"][-1] is not None:
            parts.append(f"val_acc {history['val_accuracy'][-1]:.4f}")
    parts.append(f"{history['time'][-1]:.1f}s")
    return "  ".join(parts)
