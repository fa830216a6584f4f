"""Generated sequence tasks: long-memory problems, time series, and images read row by row.

Sequences are batch first, ``(N, T, F)``. Every generator takes ``seed`` (an int, a
``np.random.Generator`` or None for fresh entropy) and draws from
``np.random.default_rng(seed)``, so the same seed gives the same data.
"""
import math

import numpy as np

from .checks import check_int, rng_from_seed


# ----------------------------------------------------------------------------- argument checks

def _check_positive(func, name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: expected {name} to be a number, got {type(value).__name__}")
    try:
        finite = math.isfinite(value)
    except OverflowError:           # an int too large for a float
        finite = False
    if not (value >= 0 if allow_zero else value > 0) or not finite:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{func}: expected a finite {name} {bound}, got {value}")


# ----------------------------------------------------------------------------- long-memory tasks

def adding_problem(n, T, seed=None):
    """The adding problem (Hochreiter & Schmidhuber, 1997), in the form of Le et al. (2015)
    and Arjovsky et al. (2016).

    Each sequence has two channels: channel 0 holds values drawn from U(0, 1); channel 1 is a
    marker that is 1 at exactly two steps -- one drawn uniformly from the first half
    ``[0, T // 2)``, one from the second half ``[T // 2, T)`` -- and 0 elsewhere. The target is
    the sum of the two marked values. The network must carry the first value across up to
    ``T - 1`` steps.

    Baseline: predicting the constant 1.0 (the target's mean) gives a mean squared error of
    ``Var(a + b) = 2 * (1/12) = 1/6 ~ 0.167``; a model has learned something only below that.

    Parameters
    ----------
    n : int >= 1, number of sequences.
    T : int >= 2, sequence length.
    seed : int, np.random.Generator or None.

    Returns
    -------
    x : float32 ``(n, T, 2)``
    y : float32 ``(n, 1)``, equal to ``(x[:, :, 0] * x[:, :, 1]).sum(1, keepdims=True)``.
    """
    n = check_int("adding_problem", "n", n, 1)
    T = check_int("adding_problem", "T", T, 2)
    rng = rng_from_seed("adding_problem", seed)
    values = rng.random((n, T)).astype(np.float32)
    half = T // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    rows = np.arange(n)
    markers = np.zeros((n, T), dtype=np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None]
    return x, y


def copy_task(n, T, n_symbols=8, seq_len=10, seed=None):
    """The copy-memory task (Hochreiter & Schmidhuber, 1997; in the form of Arjovsky et al., 2016).

    Classes: 0 is the blank, ``1..n_symbols`` the symbols, ``n_symbols + 1`` the delimiter.
    Input: ``seq_len`` symbols drawn uniformly from ``1..n_symbols``, then ``T - 1`` blanks,
    the delimiter, then ``seq_len`` blanks. Target: blanks for the first ``T + seq_len`` steps,
    then the ``seq_len`` symbols in their original order. The network must hold the symbols
    across ``T`` steps and write them out after the delimiter.

    Baseline: a memoryless model that outputs blanks until the delimiter and then a uniform
    guess over the symbols scores a mean cross-entropy per step of
    ``seq_len * log(n_symbols) / (T + 2 * seq_len)`` (0.173 for T=100 with the defaults);
    a model has learned to copy only below that.

    Parameters
    ----------
    n : int >= 1, number of sequences.
    T : int >= 1, the delay in steps from the last symbol to the delimiter.
    n_symbols : int >= 1.
    seq_len : int >= 1, number of symbols to copy.
    seed : int, np.random.Generator or None.

    Returns
    -------
    x : float32 ``(n, T + 2 * seq_len, n_symbols + 2)``, the input classes one-hot.
    y : int64 ``(n, T + 2 * seq_len)``, the target classes (0..n_symbols).
    """
    n = check_int("copy_task", "n", n, 1)
    T = check_int("copy_task", "T", T, 1)
    n_symbols = check_int("copy_task", "n_symbols", n_symbols, 1)
    seq_len = check_int("copy_task", "seq_len", seq_len, 1)
    rng = rng_from_seed("copy_task", seed)
    length = T + 2 * seq_len
    symbols = rng.integers(1, n_symbols + 1, size=(n, seq_len))
    inputs = np.zeros((n, length), dtype=np.int64)
    inputs[:, :seq_len] = symbols
    inputs[:, seq_len + T - 1] = n_symbols + 1
    y = np.zeros((n, length), dtype=np.int64)
    y[:, -seq_len:] = symbols
    x = np.eye(n_symbols + 2, dtype=np.float32)[inputs]
    return x, y


# ----------------------------------------------------------------------------- time series

def noisy_sine(n_steps, period=25.0, noise=0.1, seed=None):
    """A sine wave with Gaussian noise: ``s[t] = sin(2 * pi * t / period) + noise * e[t]``,
    ``e[t] ~ N(0, 1)``, for ``t = 0 .. n_steps - 1``.

    Returns
    -------
    float32 ``(n_steps,)``
    """
    n_steps = check_int("noisy_sine", "n_steps", n_steps, 1)
    _check_positive("noisy_sine", "period", period)
    _check_positive("noisy_sine", "noise", noise, allow_zero=True)
    rng = rng_from_seed("noisy_sine", seed)
    t = np.arange(n_steps)
    series = np.sin(2.0 * np.pi * t / period) + noise * rng.standard_normal(n_steps)
    return series.astype(np.float32)


def _whole_steps(value, dt):
    """``value / dt`` as an int when ``value`` is a whole number (>= 1) of steps ``dt``, else None."""
    steps = round(value / dt)
    if steps < 1 or abs(steps * dt - value) > 1e-9 * max(1.0, value):
        return None
    return steps


def mackey_glass(n_steps, tau=17.0, beta=0.2, gamma=0.1, n=10, dt=0.1, washout=1000, seed=None):
    """The Mackey-Glass delay differential equation (Mackey & Glass, 1977), a classic chaotic
    time series for forecasting benchmarks (chaotic for ``tau >= 17``)::

        dx/dt = beta * x(t - tau) / (1 + x(t - tau) ** n) - gamma * x(t)

    Integrated by Euler steps of ``dt`` (which must divide 1 and ``tau``, with
    ``gamma * dt < 1``) and sampled once per unit of time. The history on ``[-tau, 0]`` is
    ``1.2`` plus noise drawn uniformly from ``[-0.1, 0.1]`` at each step (the only use of
    ``seed``); the first ``washout`` time units are discarded so the series starts on the
    attractor.

    Returns
    -------
    float32 ``(n_steps,)``, values roughly in [0.2, 1.4].
    """
    func = "mackey_glass"
    n_steps = check_int(func, "n_steps", n_steps, 1)
    for name, value in (("tau", tau), ("beta", beta), ("gamma", gamma), ("n", n), ("dt", dt)):
        _check_positive(func, name, value)
    washout = check_int(func, "washout", washout, 0)
    per_unit, delay = _whole_steps(1.0, dt), _whole_steps(tau, dt)
    if per_unit is None or delay is None:
        raise ValueError(f"{func}: expected dt to divide both 1 and tau a whole number of times, "
                         f"got dt={dt}, tau={tau}")
    if gamma * dt >= 1:
        # Each Euler step keeps (1 - gamma dt) of x: at or past 1 it flips x's sign and the series
        # diverges (and x ** n of a negative x is complex); below 1, x stays positive and bounded.
        raise ValueError(f"{func}: expected gamma * dt < 1 for stable Euler steps, got "
                         f"gamma * dt = {gamma * dt:g} (gamma={gamma}, dt={dt})")
    rng = rng_from_seed("mackey_glass", seed)
    x = list(1.2 + rng.uniform(-0.1, 0.1, size=delay + 1))
    for _ in range((washout + n_steps - 1) * per_unit):
        lagged, now = x[-delay - 1], x[-1]
        x.append(now + dt * (beta * lagged / (1.0 + lagged ** n) - gamma * now))
    samples = np.asarray(x[delay::per_unit][washout:washout + n_steps])
    return samples.astype(np.float32)


def sliding_windows(series, window, horizon=1):
    """Cut a 1-D series into (input window, future value) pairs for forecasting.

    ``x[i] = series[i : i + window]`` and ``y[i] = series[i + window + horizon - 1]``: the
    value ``horizon`` steps after the window's last one (``horizon=1``: the next value).

    Parameters
    ----------
    series : np.ndarray ``(L,)`` of a real dtype.
    window : int >= 1.
    horizon : int >= 1.

    Returns
    -------
    x : ``(M, window, 1)``, ``M = L - window - horizon + 1``.
    y : ``(M, 1)``.
        Both in the series' dtype when it is floating point, else float32; copies.
    """
    func = "sliding_windows"
    if not isinstance(series, np.ndarray):
        raise TypeError(f"{func}: expected series to be a numpy array, got {type(series).__name__}")
    if series.ndim != 1:
        raise ValueError(f"{func}: expected a 1-D series of shape (L,), got shape {series.shape}")
    if not (np.issubdtype(series.dtype, np.floating) or np.issubdtype(series.dtype, np.integer)):
        raise TypeError(f"{func}: expected a real-valued series, got dtype {series.dtype}")
    window = check_int(func, "window", window, 1)
    horizon = check_int(func, "horizon", horizon, 1)
    m = len(series) - window - horizon + 1
    if m < 1:
        raise ValueError(
            f"{func}: expected a series longer than window + horizon - 1 = {window + horizon - 1}, "
            f"got length {len(series)}")
    if not np.issubdtype(series.dtype, np.floating):
        series = series.astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(series, window)[:m]
    x = windows[:, :, None].copy()
    y = series[window + horizon - 1:][:, None].copy()
    return x, y


# ----------------------------------------------------------------------------- images as sequences

def image_rows(x):
    """Read single-channel images row by row: ``(N, 1, H, W)`` -> ``(N, H, W)``.

    Each image becomes a sequence of ``H`` steps with ``W`` features (the row's pixels), the
    layout of the "row-wise MNIST" RNN experiments. Returns a view of ``x`` (same dtype).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"image_rows: expected a numpy array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"image_rows: expected images of shape (N, 1, H, W), got shape {x.shape}")
    return x[:, 0]
