"""Loss functions: ``loss(pred, target) -> float``, then ``loss.backward() -> dL/dpred``.

Each loss caches what its gradient needs during the call. ``reduction`` is ``'mean'``
(default), ``'sum'`` or ``'none'`` (per-element losses). ``backward(dloss)`` takes the
gradient of what the call returned -- a scalar, or with ``'none'`` one per element -- and
defaults to ones. After a call, ``count`` is the weight of the per-element losses it covered
-- how many there were, or for class labels with class weights the sum of their weights
(``'mean'`` divides their sum by it) -- so that a mean over several batches weighs each batch
by its ``count``.
"""
import numpy as np

from .checks import check_float_array, check_int, check_real

_REDUCTIONS = ("mean", "sum", "none")


class Loss:
    """Base class: validates ``reduction`` and guards ``backward`` before a call."""

    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: expected reduction in {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None
        self.count = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _reduce(self, per_element, count):
        """Reduce per-element losses; returns the loss and the scale of each element's gradient."""
        self.count = count
        if self.reduction == "none":
            return per_element, None
        total = float(per_element.sum())
        if self.reduction == "sum":
            return total, 1.0
        return (total / count, 1.0 / count) if count else (float("nan"), float("nan"))

    def _upstream(self, dloss, shape, dtype):
        """The gradient arriving at each per-element loss."""
        scale = self._cache["scale"]
        expected = shape if self.reduction == "none" else ()
        if dloss is None:
            return np.full(expected, 1.0 if scale is None else scale, dtype=dtype)
        dloss = np.asarray(dloss)
        if dloss.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__}.backward: expected dloss to be a number or an "
                            f"array of numbers, got {dloss.dtype}")
        if dloss.shape != expected:
            what = "per-element losses" if expected else f"the {self.reduction} (a scalar)"
            raise ValueError(f"{type(self).__name__}.backward: expected dloss of shape {expected}, "
                             f"as {what}, got {dloss.shape}")
        return (dloss if scale is None else dloss * scale).astype(dtype, copy=False)

    def _check_called(self):
        if self._cache is None:
            raise ValueError(f"{type(self).__name__}.backward called before the loss was computed")


def log_softmax(z, axis=-1):
    """Numerically stable log-softmax: ``z - max - log(sum(exp(z - max)))``."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on raw logits, fused with a stable log-softmax.

    Shapes: logits ``(N, C)`` with targets ``(N,)``, or ``(N, T, C)`` with ``(N, T)`` -- the
    class axis last, as a recurrent layer's output comes (PyTorch's ``CrossEntropyLoss`` takes
    ``(N, C, T)``); integer class labels in ``[0, C)``, or ``ignore_index`` for positions that
    do not count. Or class probabilities: a float target of the logits' shape and dtype (soft
    labels, mixup, distillation), where every position counts.

    With ``p = softmax(z)``, smoothing ``eps`` and the target distribution
    ``q = (1 - eps) * onehot(y) + eps / C`` (or ``(1 - eps) * y + eps / C`` for probabilities)::

        loss_n = -sum_c q_c log p_c           (PyTorch's definition of label smoothing)
        dloss_n/dz = p * sum_c q_c - q        (= p - q when q sums to 1: the famous
                                               "dlogits = p - y" when eps = 0)

    ``'mean'`` divides by the number of counted targets (the non-ignored labels, or every
    position for probabilities), as PyTorch does.

    ``weight`` (``(C,)``, optional, PyTorch's): class ``c``'s terms count ``w_c`` times, i.e.
    ``q`` above becomes ``w * q`` (so ``dloss_n/dz = p * sum_c w_c q_c - w * q``); for labels
    ``'mean'`` then divides by the summed weight of the counted labels, ``sum_n w_{y_n}``.
    """

    def __init__(self, reduction="mean", ignore_index=-100, label_smoothing=0.0, weight=None):
        super().__init__(reduction)
        self.ignore_index = check_int("CrossEntropyLoss", "ignore_index", ignore_index)
        self.label_smoothing = check_real("CrossEntropyLoss", "label_smoothing", label_smoothing, 0.0, 1.0)
        self.weight = None if weight is None else _class_weights(weight)

    def forward(self, logits, target):
        check_float_array("CrossEntropyLoss", logits, "logits")
        if logits.ndim not in (2, 3) or logits.shape[-1] == 0:
            raise ValueError(f"CrossEntropyLoss: expected logits of shape (N, C) or (N, T, C) with "
                             f"C >= 1 classes, got {logits.shape}")
        target = np.asarray(target)
        if np.issubdtype(target.dtype, np.floating):
            return self._forward_probabilities(logits, target)
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(f"CrossEntropyLoss: expected integer class labels or float class "
                            f"probabilities, got dtype {target.dtype}")
        if target.shape != logits.shape[:-1]:
            hint = ("; the class axis is the last here, PyTorch's is axis 1: pass "
                    "logits.transpose(0, 2, 1)" if target.shape == logits.shape[::2] else "")
            raise ValueError(f"CrossEntropyLoss: expected target of shape {logits.shape[:-1]} for logits "
                             f"{logits.shape}, got {target.shape}{hint}")
        C = logits.shape[-1]
        w = self._weight_for(C, logits.dtype)
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= C))
        if bad.any():
            raise ValueError(f"CrossEntropyLoss: expected labels in [0, {C}) or ignore_index="
                             f"{self.ignore_index}, got {target[bad].flat[0]}")
        logp = log_softmax(logits)
        safe = np.where(valid, target, 0)
        nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        eps = self.label_smoothing
        if w is None:
            per = (1 - eps) * nll - (eps / C) * logp.sum(axis=-1) if eps else nll
            count = int(valid.sum())
        else:
            w_y = w[safe]                                   # each label's weight
            per = (1 - eps) * w_y * nll - (eps / C) * (logp * w).sum(axis=-1) if eps else w_y * nll
            count = float(np.where(valid, w_y, 0).sum())
        per = np.where(valid, per, 0).astype(logits.dtype)
        loss, scale = self._reduce(per, count)
        self._cache = {"logp": logp, "safe": safe, "valid": valid, "scale": scale, "w": w}
        return loss

    def _weight_for(self, C, dtype):
        """The class weights in the logits' dtype, or None; refused unless there is one per class."""
        if self.weight is None:
            return None
        if self.weight.shape != (C,):
            raise ValueError(f"CrossEntropyLoss: expected weight of shape ({C},), one per class of the "
                             f"logits, got {self.weight.shape}")
        return self.weight.astype(dtype)

    def _forward_probabilities(self, logits, target):
        if target.shape == logits.shape[:-1]:
            raise TypeError(f"CrossEntropyLoss: expected integer class labels for a target of shape "
                            f"{target.shape} (or class probabilities of the logits' shape "
                            f"{logits.shape}), got {target.dtype} labels; use target.astype(np.int64)")
        if self.ignore_index != -100:           # PyTorch's default, which means "none"
            raise ValueError(f"CrossEntropyLoss: ignore_index={self.ignore_index} applies to integer "
                             "labels; class probabilities have no index to ignore")
        if target.dtype != logits.dtype:
            raise TypeError(f"CrossEntropyLoss: expected class probabilities of the logits' dtype "
                            f"{logits.dtype}, got {target.dtype}")
        if target.shape != logits.shape:
            raise ValueError(f"CrossEntropyLoss: expected class probabilities of the logits' shape "
                             f"{logits.shape}, got {target.shape}")
        eps = self.label_smoothing
        q = (1 - eps) * target + eps / logits.shape[-1] if eps else target
        w = self._weight_for(logits.shape[-1], logits.dtype)
        q = q if w is None else q * w
        logp = log_softmax(logits)
        per = -(q * logp).sum(axis=-1)
        loss, scale = self._reduce(per, per.size)
        self._cache = {"logp": logp, "q": q, "scale": scale}
        return loss

    def backward(self, dloss=None):
        """``dlogits = (p * sum_c q_c - q) * g`` -- ``(p - q) * g`` for labels, or class
        probabilities that sum to 1 -- with ``g`` the gradient reaching each target's loss:
        ``dloss/n_valid`` for ``'mean'``, ``dloss`` for ``'sum'`` and ``'none'`` (``dloss``
        ones by default); zero for ignored targets. With class weights ``w``, ``q`` is
        ``w * q`` (``(p * sum_c w_c q_c - w * q) * g``: without smoothing, ``(p - onehot(y))
        * w_y * g``) and for labels ``'mean'`` divides by the valid targets' sum of ``w_y``
        instead of ``n_valid``."""
        self._check_called()
        if "q" in self._cache:
            logp, q = self._cache["logp"], self._cache["q"]
            g = self._upstream(dloss, logp.shape[:-1], logp.dtype)
            return (np.exp(logp) * q.sum(axis=-1, keepdims=True) - q) * g[..., None]
        logp, safe, valid, w = (self._cache[k] for k in ("logp", "safe", "valid", "w"))
        C = logp.shape[-1]
        eps = self.label_smoothing
        dz = np.exp(logp)                                   # p
        if w is None:                                       # p - q, q = (1 - eps) onehot(y) + eps / C
            dz -= eps / C
            at_y = 1 - eps
        else:                                               # p sum_c w_c q_c - w q
            w_y = w[safe]
            dz *= ((1 - eps) * w_y + (eps / C) * w.sum())[..., None]
            dz -= (eps / C) * w
            at_y = ((1 - eps) * w_y)[..., None]
        np.put_along_axis(dz, safe[..., None],
                          np.take_along_axis(dz, safe[..., None], axis=-1) - at_y, axis=-1)
        g = self._upstream(dloss, valid.shape, logp.dtype)
        dz *= np.where(valid, g, 0)[..., None]       # ignored targets: 0, even when all are (g = nan)
        return dz


def _class_weights(value):
    """``CrossEntropyLoss``'s ``weight`` as a float64 ``(C,)`` array of finite numbers >= 0."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or array.ndim != 1:
        raise TypeError(f"CrossEntropyLoss: expected weight to be a 1-D array of numbers, one per "
                        f"class, got {type(value).__name__} of dtype {array.dtype} and shape {array.shape}")
    if not (np.all(np.isfinite(array)) and np.all(array >= 0)):
        raise ValueError(f"CrossEntropyLoss: expected finite class weights >= 0, got {array}")
    return array.astype(np.float64)


def _numeric_target(owner, target, shape, whose):
    """``target`` as an array of numbers (bool, int or float) of exactly ``shape``."""
    target = np.asarray(target)
    if target.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: expected a numeric target, got dtype {target.dtype}")
    if target.shape != shape:
        raise ValueError(f"{owner}: expected target of shape {shape} ({whose}), got {target.shape}")
    return target


class MSELoss(Loss):
    """Mean squared error. ``pred`` and ``target`` must have the same shape (no broadcasting).

    ``loss = mean((pred - target)^2)``,  ``dloss/dpred = 2 (pred - target) / n``.
    """

    def forward(self, pred, target):
        check_float_array("MSELoss", pred, "pred")
        target = _numeric_target("MSELoss", target, pred.shape, "the prediction's")
        diff = pred - target.astype(pred.dtype, copy=False)
        loss, scale = self._reduce(diff * diff, diff.size)
        self._cache = {"diff": diff, "scale": scale}
        return loss

    def backward(self, dloss=None):
        """``dpred = 2 (pred - target) * g``, ``g = dloss/n`` (``'mean'``) or ``dloss``
        (``'sum'``, ``'none'``), ``dloss`` ones by default."""
        self._check_called()
        diff = self._cache["diff"]
        return diff * (2 * self._upstream(dloss, diff.shape, diff.dtype))   # 2 diff can overflow


def _bce_weight(name, value):
    """``pos_weight`` or ``weight`` as a float64 array of finite numbers >= 0 (as
    ``CrossEntropyLoss``'s class weights)."""
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"BCEWithLogitsLoss: expected {name} to be an array of numbers, got "
                        f"{type(value).__name__} {value!r}")
    if not (np.all(np.isfinite(array)) and np.all(array >= 0)):
        raise ValueError(f"BCEWithLogitsLoss: expected {name} of finite numbers >= 0, got {array}")
    return array.astype(np.float64)


def _broadcast_weight(name, weight, shape):
    """``weight`` if it broadcasts to ``shape`` without changing it (as in PyTorch), else raise."""
    try:
        fits = np.broadcast_shapes(weight.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"BCEWithLogitsLoss: expected {name} broadcastable to the logits' shape "
                         f"{shape} (e.g. {shape[-1:]} for the last axis' classes, or one number), "
                         f"got {weight.shape}")
    return weight


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits, stable for large ``|x|``.

    With ``sigma`` the logistic function and ``w = 1 + (pos_weight - 1) y`` (``pos_weight``
    broadcasts against the logits as in PyTorch: one number for every output, ``(C,)`` for the
    last axis' classes, ``(C, 1, 1)`` for the channels of ``(N, C, H, W)`` maps)::

        loss = (1 - y) x + w softplus(-x),   softplus(-x) = log1p(exp(-|x|)) + max(-x, 0)
        dloss/dx = (1 - y) - w sigma(-x)     (= sigma(x) - y when pos_weight is 1)

    Written this way no ``exp`` of a large positive number is ever taken. ``weight`` (PyTorch's,
    broadcast the same way) rescales each element's loss, and so its gradient.
    """

    def __init__(self, reduction="mean", pos_weight=None, weight=None):
        super().__init__(reduction)
        self.pos_weight = None if pos_weight is None else _bce_weight("pos_weight", pos_weight)
        self.weight = None if weight is None else _bce_weight("weight", weight)

    def forward(self, logits, target):
        check_float_array("BCEWithLogitsLoss", logits, "logits")
        target = _numeric_target("BCEWithLogitsLoss", target, logits.shape, "the logits'")
        y = target.astype(logits.dtype, copy=False)
        w = 1.0
        if self.pos_weight is not None:
            pos_weight = _broadcast_weight("pos_weight", self.pos_weight, logits.shape)
            w = (1 + (pos_weight - 1) * y).astype(logits.dtype)
        e = np.exp(-np.abs(logits))
        softplus_neg = np.log1p(e) + np.maximum(-logits, 0)
        per = (1 - y) * logits + w * softplus_neg
        sigma_neg = np.where(logits >= 0, e / (1 + e), 1 / (1 + e))      # sigma(-x), stable
        dx = (1 - y) - w * sigma_neg
        if self.weight is not None:
            scale_each = _broadcast_weight("weight", self.weight, logits.shape).astype(logits.dtype)
            per, dx = per * scale_each, dx * scale_each
        loss, scale = self._reduce(per, per.size)
        self._cache = {"dx": dx, "scale": scale}
        return loss

    def backward(self, dloss=None):
        """``dx = ((1 - y) - w sigma(-x)) * g``, ``g`` as in ``MSELoss.backward``."""
        self._check_called()
        dx = self._cache["dx"]
        return dx * self._upstream(dloss, dx.shape, dx.dtype)
