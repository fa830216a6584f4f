"""Gradient checking: compare a module's backward with float64 central differences.

For a random upstream gradient ``G`` the scalar ``L(x, params) = sum(forward(x) * G)`` has
``dL/dx = backward(G)`` and ``dL/dparam = param.grad``. Each entry is compared with::

    (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps)

on a float64 copy of the module (the original is never touched). An entry passes when
``|analytic - numeric| <= atol + rtol * |numeric|``; a backward that is 10% off in a single
element fails wherever that element is well above ``atol`` (for gradients of order 1e-5 or
smaller, lower ``atol``).
"""
import copy
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .checks import check_flag, check_int, check_real, check_size
from .module import copy_without_hooks, expect_module
from .random import get_rng


@dataclass
class GradcheckResult:
    """The comparison for one tensor."""
    name: str
    shape: tuple
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple
    passed: bool
    hint: str = ""          # for a failed tensor whose worst entry sits on a kink: see kink_hint


@dataclass
class GradcheckReport:
    """Per-tensor results; ``passed`` is True when every tensor passed. ``str(report)`` is a table."""
    results: list = field(default_factory=list)

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    def __bool__(self):
        return self.passed

    def __getitem__(self, name):
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; the rows are {[r.name for r in self.results]}")

    def __str__(self):
        # columns as wide as their longest entry (a recurrent layer's names run long)
        name_w = max([24] + [len(r.name) for r in self.results])
        shape_w = max([18] + [len(str(r.shape)) for r in self.results])
        index_w = max([16] + [len(str(r.worst_index)) for r in self.results])
        header = (f"{'tensor':<{name_w}} {'shape':<{shape_w}} {'checked':>7} {'max abs err':>12} "
                  f"{'max rel err':>12} {'worst index':<{index_w}} result")
        rows = [header, "-" * len(header)]
        for r in self.results:
            rows.append(f"{r.name:<{name_w}} {str(r.shape):<{shape_w}} {r.checked:>7} {r.max_abs_error:>12.3e} "
                        f"{r.max_rel_error:>12.3e} {str(r.worst_index):<{index_w}} {'ok' if r.passed else 'FAIL'}")
        rows += [f"{r.name}{f' at {r.worst_index}' if r.checked else ''}: {r.hint}"
                 for r in self.results if r.hint]
        return "\n".join(rows)

    __repr__ = __str__


def numerical_gradient(f, array, indices, eps=1e-6):
    """Central differences of the scalar function ``f()`` w.r.t. ``array[i]`` for each index
    in ``indices``; ``array`` (float64: a step of 1e-6 is below float32's resolution near 1)
    is perturbed in place and restored."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        got = f"a {array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
        raise TypeError(f"numerical_gradient: expected a float64 array (finite differences in "
                        f"float32 are mostly rounding), got {got}; use array.astype(np.float64)")
    grads = np.empty(len(indices))
    for k, i in enumerate(indices):
        f_at = _moved(f, array, i)
        grads[k] = (f_at(eps) - f_at(-eps)) / (2 * eps)
    return grads


#: How ``kink_hint`` ends when backward's value is one of the valid choices at the kink.
VALID_AT_KINK = "lies between them: a valid choice"


def kink_hint(loss_at, eps, analytic, atol=1e-6, rtol=1e-4):
    """Why a failed entry may be no bug: ``loss_at(h)`` is the scalar loss with the entry moved
    by ``h``. Where its one-sided slopes differ by more than the check's tolerance, and by as
    much at a step of ``2 eps`` as of ``eps`` (a smooth curve's one-sided slopes part in
    proportion to the step, a kink's by a fixed amount), the loss has a kink at this point (a
    ReLU's input at exactly 0, tied inputs of a max-pool): there is no derivative for a finite
    difference to find, and backward's value is one valid choice when it lies between the two
    slopes. (Where several kinks meet -- one input feeding several ReLUs at 0 -- valid choices
    reach beyond the slopes.) Returns that explanation, or "" where no kink shows."""
    at = loss_at(0.0)

    def slopes(h):
        return (at - loss_at(-h)) / h, (loss_at(h) - at) / h

    (left, right), (left2, right2) = slopes(eps), slopes(2 * eps)
    gap, gap2 = right - left, right2 - left2
    tol = atol + rtol * max(abs(left), abs(right))
    if abs(gap) <= tol or abs(gap2 - gap) > 0.25 * abs(gap):
        return ""
    lo, hi = min(left, right), max(left, right)
    verdict = (VALID_AT_KINK if lo - tol <= analytic <= hi + tol else
               "lies outside them: wrong, unless several kinks meet here (one input feeding several "
               "ReLUs at 0), where valid choices reach beyond the slopes")
    return (f"the loss has a kink here (left slope {left:.4g}, right slope {right:.4g}: e.g. a ReLU "
            f"at 0 or a max-pool tie), so no central difference is its gradient; backward's "
            f"{analytic:.4g} {verdict}")


def input_gradient_rows(module, kwargs):
    """``(name, array, gradient)`` for each extra input whose gradient ``module`` reports after
    backward (``input_gradients()``, e.g. a recurrent layer's initial state); an LSTM's
    ``(h0, c0)`` gives the names ``state[0]`` and ``state[1]``."""
    if not hasattr(module, "input_gradients"):
        return []
    return [(key if not isinstance(grad, tuple) else f"{key}[{j}]", array, g)
            for key, grad in module.input_gradients().items()
            for j, (array, g) in enumerate(zip(_flat(kwargs[key]), _flat(grad)))]


def gradient_problem(grad, array):
    """Why ``grad``, as backward left it, cannot be the gradient of ``array`` -- a note for
    the report, so that a backward returning a wrong shape fails there -- or ``""``."""
    if not isinstance(grad, np.ndarray):
        return f"backward gave {type(grad).__name__}, not an array of shape {array.shape}"
    if grad.shape != array.shape:
        return f"backward gave a gradient of shape {grad.shape}, expected {array.shape}"
    return ""


def nothing_to_check(owner, module):
    """Raise: a check of no tensor would pass without checking anything."""
    raise ValueError(f"{owner}: nothing to check -- {type(module).__name__} has no parameters and "
                     "the input's gradient is not checked (check_input=False, or an integer input)")


def _result_row(name, analytic, numeric, indices, shape, atol, rtol):
    """Build the result row for one tensor from its analytic and numeric entries."""
    err = np.abs(analytic - numeric)
    rel = err / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1e-12)
    ok = err <= atol + rtol * np.abs(numeric)
    worst = int(np.argmax(err - (atol + rtol * np.abs(numeric)))) if len(err) else 0
    return GradcheckResult(name, tuple(shape), len(indices), float(err.max(initial=0.0)),
                           float(rel.max(initial=0.0)), tuple(int(j) for j in indices[worst]) if len(err) else (),
                           bool(ok.all()))


def sample_indices(shape, max_samples, rng):
    """All indices of ``shape``, or ``max_samples`` of them drawn without replacement."""
    size = int(np.prod(shape))
    flat = np.arange(size) if max_samples is None or size <= max_samples else rng.choice(size, max_samples, replace=False)
    return [np.unravel_index(i, shape) for i in np.sort(flat)]


def _to64(value):
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    if isinstance(value, (tuple, list)):
        return tuple(_to64(v) for v in value)
    return value


def check_settings(owner, module, forward_kwargs, eps, atol, rtol, max_samples, seed, check_input):
    """The arguments ``gradcheck`` and ``check_intermediates`` share, checked before any work;
    returns the random generator ``seed`` makes."""
    expect_module(owner, module, "the module")
    if forward_kwargs is not None and not isinstance(forward_kwargs, dict):
        raise TypeError(f"{owner}: expected forward_kwargs to be a dict of keyword arguments or None, "
                        f"got {type(forward_kwargs).__name__}")
    check_real(owner, "eps", eps, low=0.0)
    if eps == 0:
        raise ValueError(f"{owner}: expected eps > 0 (the step of the central differences), got {eps!r}")
    check_real(owner, "atol", atol, low=0.0)
    check_real(owner, "rtol", rtol, low=0.0)
    if max_samples is not None:                   # None: every entry
        check_size(owner, "max_samples", max_samples)
    check_flag(owner, "check_input", check_input)
    if check_int(owner, "seed", seed) < 0:
        raise ValueError(f"{owner}: expected seed >= 0, got {seed}")
    return np.random.default_rng(seed)


def gradcheck(module, x, forward_kwargs=None, eps=1e-6, atol=1e-6, rtol=1e-4, max_samples=None,
              seed=0, check_input=True):
    """Check ``module.backward`` against central differences, in float64.

    Parameters
    ----------
    module : Module
        Copied and converted to float64; left unchanged. Its mode (train/eval) is kept;
        random layers (dropout) replay the same mask at every evaluation. Hooks are left out
        of the copy: the check is of the module's own function, which backward differentiates.
    x : np.ndarray
        The input; its gradient is checked unless ``check_input=False`` or it is not
        floating-point (e.g. an ``Embedding``'s integer ids).
    forward_kwargs : dict, optional
        Extra arguments to forward (e.g. a recurrent layer's ``state`` and ``lengths``).
        Floating arrays among them (or tuples of arrays) are checked too when the module
        reports their gradients through ``input_gradients()`` (a dict by keyword).
    eps : float
        The central difference's step.
    atol, rtol : float
        An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    max_samples : int, optional
        Sampled mode: check at most this many random entries per tensor.
    seed : int
        Seeds the upstream gradient ``G`` and the sampled entries.
    check_input : bool
        Check the input's gradient too (floating inputs only).

    A gradient zeroed on purpose fails where it is not the derivative: an ``Embedding``'s
    ``padding_idx`` row, when the ids look it up.

    Returns
    -------
    GradcheckReport
        Per tensor: max abs error, max relative error, worst index, pass/fail.
    """
    rng = check_settings("gradcheck", module, forward_kwargs, eps, atol, rtol, max_samples, seed, check_input)
    m = float64_copy(module)
    x = _to64(np.asarray(x))              # integer inputs (token ids) pass through unchanged
    check_input = check_input and np.issubdtype(x.dtype, np.floating)
    kwargs = {k: _to64(v) for k, v in (forward_kwargs or {}).items()}
    with replayed(m) as rewind:
        def run_forward():
            rewind()
            return m(x, **kwargs)

        out = checked_output("gradcheck", module, run_forward())
        G = rng.standard_normal(out.shape)

        def loss():
            return float(np.sum(run_forward() * G))

        m.zero_grad()
        run_forward()
        dx = m.backward(G)
        analytic = {}
        if check_input:
            analytic["input"] = (x, dx)
        for name, p in m.named_parameters():
            analytic[name] = (p.data, p.grad.copy())
        for key, arr, g in input_gradient_rows(m, kwargs):
            analytic[key] = (arr, g)

        if not analytic:
            nothing_to_check("gradcheck", module)
        report = GradcheckReport()
        for name, (array, grad) in analytic.items():
            problem = gradient_problem(grad, array)
            if problem:
                report.results.append(GradcheckResult(name, tuple(array.shape), 0, np.nan, np.nan, (),
                                                      False, problem))
                continue
            idx = sample_indices(array.shape, max_samples, rng)
            numeric = numerical_gradient(loss, array, idx, eps)
            result = _result_row(name, np.array([grad[i] for i in idx]), numeric, idx, array.shape,
                                 atol, rtol)
            if not result.passed:
                result.hint = kink_hint(_moved(loss, array, result.worst_index), eps,
                                        grad[result.worst_index], atol, rtol)
            report.results.append(result)
    return report


def checked_output(owner, module, out):
    """``out`` if it is one floating-point array: the checked function is ``sum(out * G)``."""
    if not isinstance(out, np.ndarray) or not np.issubdtype(out.dtype, np.floating):
        kind = f"{out.dtype} array" if isinstance(out, np.ndarray) else type(out).__name__
        raise TypeError(f"{owner}: {type(module).__name__}.forward must return one floating-point "
                        f"array (the function checked is sum(forward(x) * G)), got {kind}; check "
                        f"a model that returns several through a wrapper that returns the one to check")
    return out


def _moved(loss, array, i):
    """``h -> loss()`` with ``array[i]`` moved by ``h`` (and put back)."""
    def loss_at(h):
        old = array[i]
        array[i] = old + h
        try:
            return loss()
        finally:
            array[i] = old
    return loss_at


def float64_copy(module):
    """A deep copy of ``module`` in float64, without forward or backward hooks (they would
    fire on every finite-difference evaluation, and a replacing hook is not part of the
    function backward differentiates)."""
    return copy_without_hooks(module).astype(np.float64)


def _flat(value):
    return value if isinstance(value, tuple) else (value,)


@contextmanager
def replayed(module):
    """``with replayed(module) as rewind:`` -- ``rewind()`` puts ``module`` back where it was
    on entry, as far as its next forward is concerned, so that every evaluation of a finite
    difference computes the same function: the random generators of dropout layers (the same
    masks each time; a layer that would use the global generator gets a private one) and the
    state a ``stateful`` recurrent layer carries into its next call. A module of your own that
    draws from the global generator (``nn.get_rng()``) replays the same draws too, and the
    global generator is left as it was found: a check computes, it does not consume. (Only
    then is the global generator rewound: another thread drawing from it meanwhile would
    replay its draws as well.)"""
    for m in module.modules():
        if "_rng" in m.__dict__ and m._rng is None:
            m._rng = np.random.default_rng(0)
    generators = [(m._rng, copy.deepcopy(m._rng.bit_generator.state)) for m in module.modules()
                  if isinstance(m.__dict__.get("_rng"), np.random.Generator)]
    carried = [(m, m._carried_state) for m in module.modules() if "_carried_state" in m.__dict__]
    shared = get_rng()
    shared_start = copy.deepcopy(shared.bit_generator.state)
    calls, draws = 0, False          # whether the first forward drew from the global generator

    def rewind_shared():
        if draws:
            shared.bit_generator.state = copy.deepcopy(shared_start)

    def rewind():
        nonlocal calls, draws
        calls += 1
        if calls == 2:               # right after the first forward
            draws = shared.bit_generator.state != shared_start
        for rng, state in generators:
            rng.bit_generator.state = copy.deepcopy(state)
        for m, state in carried:
            m._carried_state = state
        rewind_shared()

    try:
        yield rewind
    finally:
        rewind_shared()
