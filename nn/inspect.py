"""Looking inside backpropagation: check every intermediate gradient, watch training health.

Two kinds of tools live here.

**Checking a derivation, one intermediate at a time.** ``gradcheck`` tells you *whether* a
layer's backward is right; ``check_intermediates`` tells you *where* it goes wrong. Layers
record named intermediate values while recording is on (``Dense`` records ``z``, an LSTM its
gates ``i, f, g, o`` and its ``c, h`` at every step, ...) and, during backward, the gradient of
the loss with respect to each of them. For ``L = sum(out * G)`` with a random ``G``, every
recorded gradient ``dL/d(name)`` is compared with central differences taken by nudging that
intermediate, and only it, inside the forward pass::

    dL/d(name)[i]  ~  (L(name[i] + eps) - L(name[i] - eps)) / (2 eps)

The result is a table, one row per input, parameter and intermediate (the "backprop ninja"
exercise of rederiving every line of backward, checked automatically)::

    >>> print(check_intermediates(layers.Dense(3, 2), x))

``compare(name, analytic, reference)`` prints a similar one-line check (exact: bit-equal) for
arrays you computed yourself.

**Watching a network train.** ``watch(model)`` installs forward hooks on the activation layers
that keep a few numbers per batch (the fraction of dead ReLU units, of saturated tanh and
sigmoid units); ``gradient_report(model, optimizer)`` adds, per parameter, the gradient norm,
the gradient-to-weight ratio and the update-to-weight ratio of the last optimizer step.
"""
import functools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .checks import check_real
from .gradcheck import (VALID_AT_KINK, _to64, check_settings, checked_output, float64_copy,
                        gradient_problem, input_gradient_rows, kink_hint, nothing_to_check,
                        replayed, sample_indices)
from .module import expect_module
from .parameter import Parameter

__all__ = [
    "check_intermediates", "IntermediateReport", "Row", "EXACT_TOL",
    "compare", "Comparison",
    "watch", "Watch", "activation_stats", "ActivationStats",
    "gradient_report", "GradientReport", "ParameterStats",
]

#: Default tolerance of the "exact" column of ``check_intermediates``: agreement at the level
#: of float64 finite-difference noise (see ``check_intermediates``).
EXACT_TOL = 1e-8
#: The hint of an intermediate that backward gives a gradient but forward does not use.
UNUSED_TAP = ("noise on all of it moved no output: does forward go on with the value _tap "
              "returns (x = self._tap(name, x)), not the one it passed in?")


# =============================================================================================
# comparing one gradient
# =============================================================================================

@dataclass
class Comparison:
    """One analytic gradient compared with a reference (numeric or another derivation).

    exact : bool
        ``np.array_equal(analytic, reference)``: the same numbers, bit for bit.
    approximate : bool
        Every entry within ``atol + rtol * |reference|``.
    max_abs_diff : float
        ``max |analytic - reference|``.
    """
    name: str
    exact: bool
    approximate: bool
    max_abs_diff: float

    def __str__(self):
        return (f"{self.name:<15} | exact: {str(self.exact):<5} | approximate: "
                f"{str(self.approximate):<5} | maxdiff: {self.max_abs_diff:.1e}")

    def __bool__(self):
        return self.approximate


def compare(name, analytic, reference, atol=1e-8, rtol=1e-5, show_diff=True, file=None):
    """Print and return one comparison row: is your gradient right?

    The course-style check after deriving a gradient by hand::

        compare("dlogits", dlogits, loss_fn.backward())
        dlogits         | exact: True  | approximate: True  | maxdiff: 0.0e+00

    ``exact`` asks for the same bits (``np.array_equal``), which two derivations only give when
    they do the same arithmetic in the same order; ``approximate`` allows float rounding
    (``np.allclose(analytic, reference, rtol, atol)``), which is what to expect from a
    different but correct formula. Against finite differences only ``approximate`` can hold.

    Parameters
    ----------
    analytic, reference : array_like
        Must have the same shape (nothing is broadcast).
    show_diff : bool
        Print the ``maxdiff`` column (set False for output that must not depend on the
        machine's rounding).
    file : file-like, optional
        Where to print (default ``sys.stdout``); ``False`` prints nothing.

    Returns
    -------
    Comparison
    """
    a, r = (_as_numbers(name, what, value) for what, value in
            (("analytic", analytic), ("reference", reference)))
    if a.shape != r.shape:
        raise ValueError(f"compare({name!r}): analytic has shape {a.shape}, reference has shape {r.shape}")
    a64, r64 = a.astype(np.float64), r.astype(np.float64)
    with np.errstate(invalid="ignore"):                           # inf - inf
        diff = np.where(a64 == r64, 0.0, np.abs(a64 - r64))      # inf against inf: no difference
    row = Comparison(name, bool(np.array_equal(a, r)), bool(np.allclose(a, r, rtol=rtol, atol=atol)),
                     float(diff.max(initial=0.0)))
    if file is not False:
        text = str(row) if show_diff else str(row).rsplit(" | maxdiff", 1)[0]
        print(text, file=file)
    return row


def _as_numbers(name, what, value):
    """``value`` (array-like, or a PyTorch tensor) as an array of real numbers."""
    if isinstance(value, Parameter):
        raise TypeError(f"compare({name!r}): expected {what} to be an array, got a Parameter; "
                        "compare its .data or its .grad")
    if hasattr(value, "detach"):                  # a PyTorch tensor, perhaps requiring grad
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"compare({name!r}): expected {what} to be real numbers, got an array "
                        f"of dtype {array.dtype}")
    return array


# =============================================================================================
# check_intermediates
# =============================================================================================

@dataclass
class Row:
    """The check of one tensor: the input, a parameter, or a recorded intermediate.

    name : str
        ``"input"``, a parameter's dotted name (``"weight"``, ``"0.bias"``) or an intermediate's
        (``"z"``, ``"0.z"``, ``"h"``).
    kind : str
        ``"input"``, ``"parameter"`` or ``"intermediate"``.
    shape : tuple
        The tensor's shape (per-step intermediates are stacked to ``(N, T, ...)``).
    checked : int
        How many entries were compared (all, or ``max_samples``).
    exact, approximate : bool
        See ``check_intermediates``.
    max_abs_diff : float
        Largest ``|analytic - numeric|`` among the checked entries.
    worst_index : tuple
        Where the comparison is worst (relative to the tolerance).
    note : str
        Why a row could not be compared (no gradient recorded, shape mismatch), else "".
    per_step : bool
        True for an intermediate recorded at every time step (axis 1 is the step).
    wrong_steps : tuple
        For a per-step intermediate, the steps with a wrong entry.
    """
    name: str
    kind: str
    shape: tuple
    checked: int
    exact: bool
    approximate: bool
    max_abs_diff: float
    worst_index: tuple
    note: str = ""
    per_step: bool = False
    wrong_steps: tuple = ()
    hint: str = ""          # why a row may fail: a kink (``nn.gradcheck.kink_hint``), UNUSED_TAP

    @property
    def passed(self):
        return self.approximate and not self.note


@dataclass
class IntermediateReport:
    """The table printed by ``check_intermediates``.

    ``passed`` (also ``bool(report)``) is True when every row is approximately right;
    ``failed`` lists the names of the rows that are not; ``first_failure`` is where the error
    enters: the first wrong gradient met when walking backward from the loss, in the order
    ``backward`` computed them (recorded step by step for per-step intermediates: from the last
    step down in a forward direction, from step 0 up in a reverse one; ``first_failure_step``
    is that step). Gradients computed after it from it are wrong too,
    so fix the first one first. ``report["z"]`` is the row named ``z``.
    """
    title: str
    rows: list = field(default_factory=list)
    backward_order: list = field(default_factory=list)
    exact_tol: float = EXACT_TOL
    atol: float = 1e-6
    rtol: float = 1e-4

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    def __bool__(self):
        return self.passed

    @property
    def failed(self):
        return [r.name for r in self.rows if not r.passed]

    def _first_failure(self):
        rows = {r.name: r for r in self.rows if not r.passed}
        for name, step in self.backward_order:
            row = rows.get(name)
            if row is not None and (step is None or not row.wrong_steps or step in row.wrong_steps):
                return name, step
        return next(iter(rows), None), None        # a row backward never reached (no gradient)

    @property
    def first_failure(self):
        """Name of the first wrong gradient walking backward from the loss (None if all pass)."""
        return self._first_failure()[0]

    @property
    def first_failure_step(self):
        """The time step of ``first_failure`` when it is a per-step intermediate, else None."""
        return self._first_failure()[1]

    def __getitem__(self, name):
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row named {name!r}; rows: {[r.name for r in self.rows]}")

    def table(self, errors=True):
        """The report as text. ``errors=False`` leaves out the max-abs-diff and worst-index
        columns, whose digits depend on the machine's rounding; what is left (shapes, counts,
        exact, approximate, ok/FAIL) is the same everywhere."""
        names = [r.name for r in self.rows] + ["name"]
        w = max(len(n) for n in names) + 2
        shapes = [str(r.shape) for r in self.rows] + ["shape"]
        ws = max(len(s) for s in shapes) + 2
        head = f"{'name':<{w}}{'shape':<{ws}}{'checked':>7}  {'exact':<6} {'approximate':<13}"
        if errors:
            head += f"{'max abs diff':>12}  {'worst index':<14}"
        head += "result"
        lines = [self.title,
                 f"exact: |a - n| <= {self.exact_tol:.0e} (1 + |n|);  "
                 f"approximate: |a - n| <= {self.atol:.0e} + {self.rtol:.0e} |n|",
                 head, "-" * len(head)]
        for r in self.rows:
            line = (f"{r.name:<{w}}{str(r.shape):<{ws}}{r.checked:>7}  {str(r.exact):<6} "
                    f"{str(r.approximate):<13}")
            if errors:
                line += f"{r.max_abs_diff:>12.1e}  {str(r.worst_index):<14}"
            line += "ok" if r.passed else ("FAIL" + (f" ({r.note})" if r.note else ""))
            lines.append(line)
        lines += [f"{r.name} at {r.worst_index}: {r.hint}" for r in self.rows if r.hint]
        if not self.passed:
            name, step = self._first_failure()
            where = f"{name!r}" + ("" if step is None else f" at step {step}")
            if self[name].hint == UNUSED_TAP:
                lines.append(f"wrong: {', '.join(self.failed)}; the first of them walking backward "
                             f"from the loss, {where}, is recorded but not used by forward: fix "
                             "that tap first")
            elif self[name].hint.endswith(VALID_AT_KINK):
                lines.append(f"wrong: {', '.join(self.failed)}; the first of them walking backward "
                             f"from the loss, {where}, fails on a kink where backward's value is a "
                             "valid choice: the failures may all be the kink's, not backward's")
            else:
                lines.append(f"wrong: {', '.join(self.failed)}; the error enters at {where} "
                             f"(the first wrong gradient walking backward from the loss)")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    __repr__ = __str__


def check_intermediates(layer, x, forward_kwargs=None, eps=1e-6, atol=1e-6, rtol=1e-4,
                        max_samples=None, seed=0, exact_tol=EXACT_TOL, names=None,
                        check_input=True):
    """Check the gradient of every recorded intermediate, parameter and the input.

    On a float64 deep copy of ``layer`` (the original is untouched) with recording on, run
    ``out = forward(x)`` and ``backward(G)`` for a random ``G``, i.e. differentiate
    ``L = sum(out * G)``. Then, for each tensor ``T`` (an intermediate, a parameter, the input)
    and each checked entry ``i``, compare the analytic ``dL/dT[i]`` with::

        numeric = sum((out(T[i] + eps) - out(T[i] - eps)) * G) / (2 eps)

    An intermediate is nudged where the layer records it (``Module._tap``), so everything
    computed from it in forward sees the nudge and nothing computed before it does.
    (Differencing the outputs before summing avoids the cancellation of subtracting two
    large losses.)

    Two verdicts per row, with ``a`` analytic and ``n`` numeric:

    * **exact** -- ``|a - n| <= exact_tol * (1 + |n|)`` everywhere: agreement down to the noise
      of float64 central differences (about 1e-10 at ``eps=1e-6``). Finite differences never
      give the same bits as a derivation, so "exact" here means "no error beyond what the
      numeric method itself makes". A gradient that is right except for a small term (say a
      forgotten ``eps`` under a square root) is approximate but not exact.
    * **approximate** -- ``|a - n| <= atol + rtol * |n|`` everywhere (``gradcheck``'s test).
      A row passes when it is approximate.

    Parameters
    ----------
    layer : Module
        A single layer or a model; intermediates of every sub-module are checked and named
        with its dotted prefix (``"0.z"``). It is left unchanged: the check runs on a float64
        copy without its hooks (``gradcheck``'s).
    x : np.ndarray
        The input. A floating input is converted to float64 and checked (unless
        ``check_input=False``); an integer input (token ids) is passed as it is.
    forward_kwargs : dict, optional
        Extra arguments to forward (a recurrent layer's ``state``, ``lengths``); those the
        module reports gradients for through ``input_gradients()`` (an initial state) get a
        row each, as the input does.
    eps, atol, rtol : float
        Step of the central differences and the tolerances of "approximate".
    max_samples : int, optional
        Check at most this many random entries per tensor (all by default).
    seed : int
        Seeds ``G`` and the sampled entries.
    exact_tol : float
        Tolerance of "exact" (default ``1e-8``).
    names : str or iterable of str, optional
        Only these rows (by name, e.g. ``{"z", "weight"}``); all by default.

    Returns
    -------
    IntermediateReport
        ``print(report)`` shows the table; ``report.passed``, ``report.failed`` and
        ``report.first_failure`` summarise it.
    """
    rng = check_settings("check_intermediates", layer, forward_kwargs, eps, atol, rtol, max_samples, seed,
                         check_input)
    check_real("check_intermediates", "exact_tol", exact_tol, low=0.0)
    wanted = None if names is None else _names(names)
    model = float64_copy(layer)
    model.record_intermediates(True)
    x = np.asarray(x)
    floating_input = np.issubdtype(x.dtype, np.floating)
    x = np.array(x, dtype=np.float64) if floating_input else x
    kwargs = {k: _to64(v) for k, v in (forward_kwargs or {}).items()}
    with replayed(model) as rewind:
        def run():
            """One forward pass (random layers replay the same draws every time)."""
            rewind()
            return np.array(checked_output("check_intermediates", layer, model(x, **kwargs)), copy=True)

        out = run()
        G = rng.standard_normal(out.shape)
        model.zero_grad()
        run()
        dx = model.backward(G)

        inputs = [("input", x, dx)] if check_input and floating_input else []
        inputs += input_gradient_rows(model, kwargs)   # e.g. a recurrent layer's initial state
        targets, backward_order, unused = _targets(model, inputs, run, out)

        if not targets:
            nothing_to_check("check_intermediates", layer)
        if wanted is not None:
            unknown = wanted - {t[0] for t in targets}
            if unknown:
                raise ValueError(f"check_intermediates: no tensor named {sorted(unknown)}; "
                                 f"available: {[t[0] for t in targets]}")
            targets = [t for t in targets if t[0] in wanted]

        title = f"check_intermediates: {type(layer).__name__}, float64, eps={eps:g}"
        report = IntermediateReport(title, backward_order=backward_order, exact_tol=exact_tol,
                                    atol=atol, rtol=rtol)
        for name, kind, shape, grad, nudge, note, stepped in targets:
            idx = sample_indices(shape, max_samples, rng)
            if grad is None:
                report.rows.append(Row(name, kind, tuple(shape), 0, False, False, float("nan"), (),
                                       note, stepped))
                continue
            numeric = _central_differences(run, G, nudge, idx, eps)
            analytic = np.array([grad[i] for i in idx], dtype=np.float64)
            row = _row(name, kind, shape, idx, analytic, numeric, atol, rtol, exact_tol, stepped)
            if not row.approximate and kind == "intermediate" and not numeric.any() and unused[name]():
                row.hint = UNUSED_TAP
            elif not row.approximate:
                row.hint = kink_hint(_nudged_loss(run, G, nudge, row.worst_index), eps,
                                     float(grad[row.worst_index]), atol, rtol)
            report.rows.append(row)
    model.record_intermediates(False)
    return report


def _targets(model, inputs, run, out):
    """What ``check_intermediates`` checks, after one forward and backward of ``model``:

    - ``targets``: ``(name, kind, shape, analytic gradient or None, nudge(index, h), note,
      per-step)`` for the inputs, each parameter (a shared one once) and each floating
      intermediate;
    - ``backward_order``: ``(name, step)`` in the order backward computed the gradients;
    - ``unused``: per intermediate, a function telling whether forward ignores it.
    """
    targets, events, unused = [], [], {}
    for name, array, grad in inputs:
        note = gradient_problem(grad, array)
        targets.append((name, "input", array.shape, None if note else grad, _array_nudger(array),
                        note, False))
    shared = {id(p): name for name, p in model.named_parameters()}
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, p in mod._parameters.items():
            if shared.get(id(p)) == prefix + p_name:
                targets.append((prefix + p_name, "parameter", p.data.shape, p.grad.copy(),
                                _array_nudger(p.data), "", False))
        for tap, value in mod.intermediates.items():
            value = np.asarray(value)
            if not np.issubdtype(value.dtype, np.floating):
                continue                                  # indices, masks: not differentiable
            grad = mod.intermediate_grads.get(tap)
            note = ""
            if grad is None:
                note = "backward recorded no gradient for it"
            elif np.shape(grad) != value.shape:
                note = f"gradient has shape {np.shape(grad)}"
                grad = None
            targets.append((prefix + tap, "intermediate", value.shape, grad,
                            _tap_nudger(mod, tap, value.shape), note, tap in mod.per_step_intermediates))
            unused[prefix + tap] = functools.partial(_moves_nothing, run, out, mod, tap, value)
        events += [(tick, prefix + n, t)
                   for (n, t), tick in zip(mod.intermediate_grad_order, mod._grad_ticks)]
        events += [(mod._backward_tick, prefix + n, None) for n in mod._parameters]
    events.sort(key=lambda e: e[0])     # when backward computed them (stable: params in order)
    backward_order = [(name, t) for _, name, t in events] + [(name, None) for name, _, _ in inputs]
    return targets, backward_order, unused


def _array_nudger(array):
    """``nudge(i, h)`` sets ``array[i]`` to its original value plus ``h``."""
    original = array.copy()

    def nudge(i, h):
        array[i] = original[i] + h
    return nudge


def _tap_nudger(module, name, shape):
    """``nudge(i, h)`` makes ``module._tap(name, ...)`` add ``h`` at entry ``i``."""
    delta = np.zeros(shape)

    def nudge(i, h):
        delta[i] = h
        if h:
            module._perturbations[name] = delta
        else:
            module._perturbations.pop(name, None)
    return nudge


def _moves_nothing(run, out, module, name, value):
    """Whether noise on every entry of intermediate ``name`` at once, as large as the entries,
    leaves the output unchanged: forward went on without the value ``_tap`` returned."""
    noise = np.random.default_rng(0).standard_normal(value.shape) * (1 + np.abs(value))
    module._perturbations[name] = noise
    try:
        return np.array_equal(run(), out, equal_nan=True)
    finally:
        module._perturbations.pop(name, None)


def _central_differences(run, G, nudge, indices, eps):
    """``sum((out(+eps) - out(-eps)) * G) / (2 eps)`` for each index."""
    grads = np.empty(len(indices))
    for k, i in enumerate(indices):
        nudge(i, eps)
        plus = run()
        nudge(i, -eps)
        minus = run()
        nudge(i, 0.0)
        grads[k] = np.sum((plus - minus) * G) / (2 * eps)
    return grads


def _nudged_loss(run, G, nudge, i):
    """``h -> sum(out * G)`` with entry ``i`` nudged by ``h`` (and put back)."""
    def loss_at(h):
        nudge(i, h)
        try:
            return float(np.sum(run() * G))
        finally:
            nudge(i, 0.0)
    return loss_at


def _names(names):
    """``names`` (one name, or an iterable of them) as a set."""
    wanted = [names] if isinstance(names, str) else list(names) if isinstance(names, Iterable) else None
    if wanted is None or not all(isinstance(n, str) for n in wanted):
        raise TypeError(f"check_intermediates: expected names to be a name or an iterable of names, "
                        f"got {names!r}")
    return set(wanted)


def _row(name, kind, shape, indices, analytic, numeric, atol, rtol, exact_tol, per_step):
    err = np.abs(analytic - numeric)
    approx = err <= atol + rtol * np.abs(numeric)
    exact = err <= exact_tol * (1 + np.abs(numeric))
    if len(err):
        worst = int(np.argmax(err - (atol + rtol * np.abs(numeric))))
        worst_index = tuple(int(j) for j in indices[worst])
    else:
        worst_index = ()
    wrong_steps = tuple(sorted({int(indices[k][1]) for k in np.flatnonzero(~approx)})) if per_step else ()
    return Row(name, kind, tuple(shape), len(indices), bool(exact.all()), bool(approx.all()),
               float(err.max(initial=0.0)), worst_index, per_step=per_step, wrong_steps=wrong_steps)


# =============================================================================================
# watching activations
# =============================================================================================

#: Saturation thresholds: |tanh(x)| > 0.97, sigmoid(x) outside [0.03, 0.97].
TANH_SATURATION = 0.97
SIGMOID_SATURATION = (0.03, 0.97)

_KINDS = ("ReLU", "LeakyReLU", "Tanh", "Sigmoid")
_last_watch = weakref.WeakKeyDictionary()        # model -> the Watch that last watched it


@dataclass
class ActivationStats:
    """What an activation layer's output looked like on the last batch it saw.

    name, kind : str
        The module's dotted name in the model and its type (``"ReLU"``, ``"Tanh"``, ...).
    samples, units : int
        Batch size ``N`` and units per sample: one unit is one position of the output,
        every axis except the batch axis (a feature of a Dense layer, a (channel, row, column)
        of a convolution).
    dead_fraction : float or None
        ReLU / LeakyReLU: fraction of units whose input was not positive for any sample in
        the batch (they passed no gradient through ``[x > 0]``, or only the leak). None
        otherwise.
    saturated_fraction : float or None
        Tanh: fraction of activations with ``|y| > 0.97``; Sigmoid: with ``y`` outside
        ``[0.03, 0.97]`` (there the local derivative ``y (1 - y)`` is below 0.03 and gradients fade).
        None for ReLU-like layers.
    mean, std : float
        Of all the batch's activations.
    """
    name: str
    kind: str
    samples: int
    units: int
    dead_fraction: float = None
    saturated_fraction: float = None
    mean: float = 0.0
    std: float = 0.0


def activation_stats(name, kind, y, x=None):
    """The ``ActivationStats`` of one non-empty output array ``y`` of shape ``(N, ...)``. For
    ReLU kinds the sign of the input ``x`` tells the dead units (of ``y`` when no ``x`` is
    given: the same for a ReLU, not for a LeakyReLU with a negative slope)."""
    y = np.asarray(y)
    n = y.shape[0] if y.ndim else 1
    stats = ActivationStats(name, kind, n, y.size // n, mean=float(y.mean()), std=float(y.std()))
    if kind in ("ReLU", "LeakyReLU"):
        alive = (np.asarray(y if x is None else x).reshape(n, -1) > 0).any(axis=0)
        stats.dead_fraction = float(1.0 - alive.mean())
    elif kind == "Tanh":
        stats.saturated_fraction = float((np.abs(y) > TANH_SATURATION).mean())
    elif kind == "Sigmoid":
        lo, hi = SIGMOID_SATURATION
        stats.saturated_fraction = float(((y < lo) | (y > hi)).mean())
    return stats


def _kind(module):
    """``"ReLU"``, ``"LeakyReLU"``, ``"Tanh"``, ``"Sigmoid"`` (or a subclass of one), else None."""
    for cls in type(module).__mro__:
        if cls.__name__ in _KINDS:
            return cls.__name__
    return None


class Watch:
    """Forward hooks on a model's ReLU, LeakyReLU, Tanh and Sigmoid layers.

    After every forward each hook keeps a handful of numbers about the output
    (``ActivationStats``), never the array itself, so watching costs one pass over each
    activation and no memory. ``stats`` maps the module's dotted name to the statistics of the
    last batch it saw; they stay available after ``remove()``, for ``gradient_report``.

    Use it as a context manager (hooks removed at the end of the block) or call ``remove()``.
    """

    def __init__(self, model):
        expect_module("watch", model)
        self.stats = {}
        self._handles = []
        for name, module in model.named_modules():
            kind = _kind(module)
            if kind is not None:
                self._handles.append(module.register_forward_hook(self._hook(module, name or kind, kind)))
        _last_watch[model] = self

    def _hook(self, module, name, kind):
        watched = weakref.ref(module)

        def hook(module, inputs, output):
            # not a deep copy (copy.deepcopy keeps its hooks); an empty batch shows nothing; an
            # input passed by keyword reaches no hook: the output tells the dead units then
            if module is watched() and np.size(output):
                self.stats[name] = activation_stats(name, kind, output, inputs[0] if inputs else None)
        return hook

    @property
    def active(self):
        """True until ``remove()``."""
        return bool(self._handles)

    def remove(self):
        """Unregister the hooks (the statistics gathered so far are kept)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def __repr__(self):
        return f"Watch({len(self._handles)} hooks, {len(self.stats)} layers seen)"


def watch(model):
    """Start gathering activation statistics on ``model``; returns a ``Watch``.

    >>> with watch(model):
    ...     loss = loss_fn(model(xb), yb)     # hooks record dead / saturated fractions
    >>> model.backward(loss_fn.backward()); opt.step()
    >>> print(gradient_report(model, opt))
    """
    return Watch(model)


# =============================================================================================
# gradient_report
# =============================================================================================

@dataclass
class ParameterStats:
    """One parameter's gradient and update, after a backward (and a step).

    name : str
        Dotted parameter name (``"0.weight"``).
    layer : str
        The owning module's type (``"Dense"``).
    shape : tuple
    grad_norm : float
        ``||dL/dtheta||`` (Frobenius norm).
    data_norm : float
        ``||theta||``.
    grad_ratio : float
        ``||dL/dtheta|| / ||theta||``: how big a step of learning rate 1 would be, relative to
        the weights (``inf`` for zero weights with a nonzero gradient).
    update_ratio : float or None
        ``||delta theta|| / ||theta||`` of the optimizer's last ``step()``: around 1e-3 is the
        classic healthy value; far below, the layer barely learns; far above, it thrashes.
        None when no optimizer tracking updates was given.
    """
    name: str
    layer: str
    shape: tuple
    grad_norm: float
    data_norm: float
    grad_ratio: float
    update_ratio: float = None


@dataclass
class GradientReport:
    """Per-parameter gradient statistics and per-activation unit statistics.

    ``str(report)`` is two tables; ``report.plot(path)`` draws them (needs matplotlib);
    ``report["0.weight"]`` is one parameter's row, ``report.activation("1")`` one activation's.
    """
    parameters: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __getitem__(self, name):
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"no parameter named {name!r}; parameters: {[p.name for p in self.parameters]}")

    def activation(self, name):
        for a in self.activations:
            if a.name == name:
                return a
        raise KeyError(f"no watched activation named {name!r}; watched: {[a.name for a in self.activations]}")

    def __str__(self):
        w = max([len(p.name) for p in self.parameters] + [9]) + 2
        wl = max([len(p.layer) for p in self.parameters] + [5]) + 2
        ws = max([len(str(p.shape)) for p in self.parameters] + [12]) + 2
        head = (f"{'parameter':<{w}}{'layer':<{wl}}{'shape':<{ws}}{'|grad|':>10}  {'|grad|/|data|':>13}  "
                f"{'update/data':>11}")
        lines = [head, "-" * len(head)]
        for p in self.parameters:
            upd = "-" if p.update_ratio is None else f"{p.update_ratio:.2e}"
            lines.append(f"{p.name:<{w}}{p.layer:<{wl}}{str(p.shape):<{ws}}{p.grad_norm:>10.3e}  "
                         f"{p.grad_ratio:>13.3e}  {upd:>11}")
        if self.activations:
            wa = max([len(a.name) for a in self.activations] + [10]) + 2
            head = (f"{'activation':<{wa}}{'kind':<11}{'units':>7}  {'dead':>7}  {'saturated':>9}  "
                    f"{'mean':>8}  {'std':>8}")
            lines += ["", head, "-" * len(head)]
            for a in self.activations:
                dead = "-" if a.dead_fraction is None else f"{a.dead_fraction:.1%}"
                sat = "-" if a.saturated_fraction is None else f"{a.saturated_fraction:.1%}"
                lines.append(f"{a.name:<{wa}}{a.kind:<11}{a.units:>7}  {dead:>7}  {sat:>9}  "
                             f"{a.mean:>8.3f}  {a.std:>8.3f}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def plot(self, path, dpi=100):
        """Write a figure to ``path``: gradient norms, update ratios (log scale, with the
        1e-3 guide line) and dead / saturated fractions, one bar per parameter or layer.
        Needs matplotlib; returns ``path``."""
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError("GradientReport.plot needs matplotlib, which is not installed: "
                              "pip install matplotlib (or pip install handprop[bench])") from err
        fig = Figure(figsize=(11, 3.6), layout="constrained")
        ax_grad, ax_upd, ax_act = fig.subplots(1, 3)
        names = [p.name for p in self.parameters]
        pos = np.arange(len(names))
        norms = [p.grad_norm for p in self.parameters]
        _log_bars(ax_grad, pos, norms, "tab:blue")
        ax_grad.set_title("gradient norm |dL/dθ|")
        if any(0 < v < np.inf for v in norms):
            ax_grad.set_yscale("log")
        tracked = [p.update_ratio for p in self.parameters if p.update_ratio is not None]
        _log_bars(ax_upd, pos, [p.update_ratio for p in self.parameters], "tab:orange")
        ax_upd.axhline(1e-3, color="k", linestyle="--", linewidth=1, label="1e-3")
        ax_upd.set_yscale("log")
        ax_upd.set_title("update / weight, last step")
        ax_upd.legend(loc="upper right")
        if not any(tracked):
            note = "every tracked update was zero" if tracked else "no optimizer updates tracked"
            ax_upd.text(0.5, 0.5, note, ha="center", va="center", transform=ax_upd.transAxes)
        act_names = [a.name for a in self.activations]
        x = np.arange(len(act_names))
        ax_act.bar(x - 0.2, [a.dead_fraction or 0.0 for a in self.activations], width=0.4, label="dead (ReLU)")
        ax_act.bar(x + 0.2, [a.saturated_fraction or 0.0 for a in self.activations], width=0.4,
                   label="saturated (tanh/sigmoid)")
        ax_act.set_xticks(x, [f"{a.name}\n{a.kind}" for a in self.activations])
        ax_act.set_ylim(0, 1)
        ax_act.set_title("activations, last batch")
        ax_act.legend(loc="upper right")
        if not self.activations:
            ax_act.text(0.5, 0.5, "no activations watched", ha="center", va="center",
                        transform=ax_act.transAxes)
        for ax in (ax_grad, ax_upd):
            ax.set_xticks(pos, names, rotation=60, fontsize=8)
            ax.set_xlim(-0.6, len(names) - 0.4)
        fig.savefig(path, dpi=dpi)
        return path


def _log_bars(ax, pos, values, color):
    """Bars of the finite positive ``values`` (a log axis shows no 0; None: nothing to show);
    an infinite or nan value is written at the top of its place instead, so that it is not
    mistaken for none."""
    shown = [v if v is not None and 0 < v < np.inf else np.nan for v in values]
    ax.bar(pos, shown, color=color)
    for p, v in zip(pos, values):
        if v is not None and not np.isfinite(v):
            ax.text(p, 0.97, str(v), ha="center", va="top", rotation=90, fontsize=8,
                    transform=ax.get_xaxis_transform())


def gradient_report(model, optimizer=None, watcher=None):
    """Gradient health after a backward: per parameter and per activation layer.

    Parameters
    ----------
    model : Module
        Its parameters' current ``.grad`` and ``.data`` are read (run a backward first).
    optimizer : optional
        When it tracks updates (``optimizer.track_updates = True`` before ``step()``), its
        ``update_ratios`` (``id(parameter) -> ||delta theta|| / ||theta||`` of the last step)
        fill the update column; otherwise the column shows "-".
    watcher : Watch, optional
        Where the activation statistics come from; by default the last ``watch(model)``.

    Returns
    -------
    GradientReport
    """
    expect_module("gradient_report", model)
    report = GradientReport()
    owners = {}
    for mod in model.modules():
        for p in mod._parameters.values():
            owners.setdefault(id(p), type(mod).__name__)
    ratios = getattr(optimizer, "update_ratios", None) if optimizer is not None else None
    tracking = getattr(optimizer, "track_updates", False)
    params = getattr(optimizer, "params", None)
    all_frozen = bool(params) and not any(p.requires_grad for p in params)   # its steps move none
    if optimizer is not None and not ratios and not (tracking and all_frozen):
        fix = ("no step() has run since optimizer.track_updates was set"
               if getattr(optimizer, "track_updates", False)
               else "set optimizer.track_updates = True before step()")
        report.notes.append(f"{type(optimizer).__name__} reported no update ratios: {fix}")
    if all(m._backward_tick < 0 for m in model.modules()):
        report.notes.append("no backward has run on this model: the gradients shown are the ones "
                            "its parameters started with")
    unset = [name for name, p in model.named_parameters() if p.grad is None]
    if unset:
        report.notes.append(f"no gradient (grad is None), shown as 0: {', '.join(unset)}")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        report.notes.append(f"frozen (requires_grad=False), left alone by the optimizer: {', '.join(frozen)}")
    for name, p in model.named_parameters():
        g = float(np.linalg.norm(p.grad.astype(np.float64))) if p.grad is not None else 0.0
        d = float(np.linalg.norm(p.data.astype(np.float64)))
        ratio = g / d if d > 0 else (0.0 if g == 0 else float("inf"))
        update = ratios.get(id(p)) if ratios else None
        if tracking and not p.requires_grad:
            update = 0.0                    # tracked, and not moved
        report.parameters.append(ParameterStats(name, owners.get(id(p), "?"), tuple(p.data.shape), g, d,
                                                ratio, None if update is None else float(update)))
    watcher = watcher if watcher is not None else _last_watch.get(model)
    if watcher is None:
        if any(_kind(m) for m in model.modules()):
            report.notes.append("no activation statistics: run a forward inside `with watch(model):`")
    else:
        order = [name or _kind(m) for name, m in model.named_modules() if _kind(m)]
        report.activations = [watcher.stats[n] for n in order if n in watcher.stats]
    return report
