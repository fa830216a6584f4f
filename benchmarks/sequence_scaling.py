"""How training cost grows with sequence length: RNN, LSTM, GRU and a Conv1D stack, measured.

    python -m benchmarks.sequence_scaling           # T = 10 .. 1000 (about a minute or two)
    python -m benchmarks.sequence_scaling --quick   # T = 10 .. 100, every code path

For each sequence length T (log spaced from 10 to 1000) it times one forward+backward pass of a
batch of 32 sequences with 16 features through:

- ``rnn``, ``lstm``, ``gru``: one recurrent layer returning every step's output, hidden 118,
  56 and 64 units (16,048, 16,576 and 15,744 parameters);
- ``conv``: three ``Conv1D`` layers (48 channels, kernel 3, ``'same'`` padding, ReLU between;
  16,272 parameters).

With about 16k parameters each, all four do about the same arithmetic per position (two flops
per parameter and sample, forward), so differences in time come from how the work is done.

The backward receives a fixed random output gradient, so every step's output matters; as in a
training step, PyTorch skips the gradient of the input, which handprop's ``backward`` always
returns (a small extra cost on handprop's side). Times are
medians over repeated rounds in which handprop and PyTorch (when installed) take turns
(``benchmarks/harness.py``); handprop's readable NumPy reference path (``nn.use_reference()``)
is timed too, to show what the numba kernels buy. A straight line fitted to log(time) against log(T) gives the
growth exponent, over all lengths and over T >= 100 (where fixed per-call costs no longer
dominate): every model does work proportional to T, so the slopes should approach 1 -- what
differs is the constant, because a recurrent layer's T steps must run one after another (T
small matrix products) while a convolution's positions are one big matrix product.

Without PyTorch (not installed, or ``--no-torch``) the run says so and reports handprop only.

Writes ``sequence_scaling.json``, ``sequence_scaling.md`` and, with matplotlib,
``sequence_scaling.png`` (log-log, fitted slopes in the legend) to ``--out``: by default
``benchmarks/results/`` only for a run without options and with PyTorch installed (the one
committed there), ``benchmarks/results/quick/`` with ``--quick`` and
``benchmarks/results/custom/`` for any other run, so that a shorter or partial run never
replaces the committed results.
"""
import argparse
import os
import sys
import time

import numpy as np

import layers
import nn
from benchmarks.cnn_vs_rnn import load_pyplot, machine_info, markdown_table, save_report
from benchmarks.harness import (Workload, add_out_option, limit_threads, measure, resolve_out, thread_count,
                                torch_for_run)

MODELS = ("conv", "rnn", "lstm", "gru")
HIDDEN = {"rnn": 118, "lstm": 56, "gru": 64}
CONFIG = {"lengths": (10, 22, 46, 100, 215, 464, 1000), "batch_size": 32, "features": 16,
          "hidden": HIDDEN, "channels": 48, "repeats": 7, "asymptotic_from": 100}
QUICK_CONFIG = {"lengths": (10, 32, 100), "batch_size": 8, "features": 16, "hidden": HIDDEN,
                "channels": 48, "repeats": 2, "asymptotic_from": 32}
#: The options of the run whose results are committed in benchmarks/results/: none.
COMMITTED_RUNS = [{}]


def fit_slope(lengths, times):
    """Least-squares slope of log(time) against log(T): time ~ T ** slope."""
    lengths, times = np.asarray(lengths, float), np.asarray(times, float)
    if len(lengths) < 2 or np.any(lengths <= 0) or np.any(times <= 0):
        raise ValueError("fit_slope: expected at least two points with positive T and times")
    slope, _ = np.polyfit(np.log(lengths), np.log(times), 1)
    return float(slope)


class ConvStack(nn.Module):
    """Three Conv1D layers with ReLU between, over a batch-first sequence ``(N, T, F)``."""

    def __init__(self, features, channels):
        super().__init__()
        self.conv1 = layers.Conv1D(features, channels, 3, padding="same")
        self.conv2 = layers.Conv1D(channels, channels, 3, padding="same")
        self.conv3 = layers.Conv1D(channels, channels, 3, padding="same")
        self.relu1, self.relu2 = layers.ReLU(), layers.ReLU()
        self._chain = [self.conv1, self.relu1, self.conv2, self.relu2, self.conv3]

    def forward(self, x):
        h = np.ascontiguousarray(x.transpose(0, 2, 1))        # (N, T, F) -> (N, F, T)
        for layer in self._chain:
            h = layer(h)
        return h

    def backward(self, dy):
        """Through the layers in reverse, then back to ``(N, T, F)``."""
        for layer in reversed(self._chain):
            dy = layer.backward(dy)
        return dy.transpose(0, 2, 1)


def build(name, config):
    nn.seed(0)
    if name == "conv":
        return ConvStack(config["features"], config["channels"])
    layer_cls = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU}[name]
    return layer_cls(config["features"], config["hidden"][name])


def forward_flops(name, config, T):
    """Forward flops of one batch at length ``T``, from the layers' own ``flops``."""
    model, N, F = build(name, config), config["batch_size"], config["features"]
    if name != "conv":
        return model.flops((N, T, F), (N, T, config["hidden"][name]))
    C = config["channels"]
    return (model.conv1.flops((N, F, T), (N, C, T)) + 2 * model.conv2.flops((N, C, T), (N, C, T)))


def build_torch(name, config, torch):
    tnn = torch.nn
    F, C = config["features"], config["channels"]
    H = config["hidden"].get(name)
    if name == "conv":
        class TorchConvStack(tnn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = tnn.Conv1d(F, C, 3, padding="same")
                self.conv2 = tnn.Conv1d(C, C, 3, padding="same")
                self.conv3 = tnn.Conv1d(C, C, 3, padding="same")

            def forward(self, x):
                h = x.transpose(1, 2)
                return self.conv3(self.conv2(self.conv1(h).relu()).relu())
        return TorchConvStack()
    layer_cls = {"rnn": tnn.RNN, "lstm": tnn.LSTM, "gru": tnn.GRU}[name]
    rnn = layer_cls(F, H, batch_first=True)

    class FirstOutput(tnn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]
    return FirstOutput()


def parameter_counts(config):
    return {name: int(sum(p.size for p in build(name, config).parameters())) for name in MODELS}


def workload(name, T, config, torch):
    """A harness ``Workload``: ``make(impl)`` returns (forward, forward+backward) callables."""
    rng = np.random.default_rng(T)
    x = rng.standard_normal((config["batch_size"], T, config["features"])).astype(np.float32)

    def make(impl):
        if impl in ("fast", "reference"):
            model = build(name, config)
            dy = rng.standard_normal(model(x).shape).astype(np.float32)

            def fwd():
                with nn.use_reference(impl == "reference"):
                    return model(x)

            def fwd_bwd():
                model.zero_grad()
                fwd()
                model.backward(dy)
            return fwd, fwd_bwd
        if impl == "torch" and torch is not None:
            model = build_torch(name, config, torch)
            xt = torch.from_numpy(x)
            dyt = torch.from_numpy(rng.standard_normal(tuple(model(xt).shape)).astype(np.float32))

            def fwd_bwd():
                model.zero_grad()
                model(xt).backward(dyt)

            def fwd():
                with torch.no_grad():
                    model(xt)
            return fwd, fwd_bwd
        return None
    return Workload(f"{name} T={T}", forward_flops(name, config, T), make)


IMPL_NAMES = {"fast": "handprop", "reference": "reference", "torch": "torch"}


def run(config, torch, with_reference):
    """Time every (model, T), beside ``torch`` (PyTorch, or None); returns rows and fitted
    slopes per implementation."""
    impls = ("fast",) + (("reference",) if with_reference else ()) + (("torch",) if torch else ())
    rows = []
    for T in config["lengths"]:
        jobs = [workload(name, T, config, torch) for name in MODELS]
        results = measure(jobs, impls=impls, repeats=config["repeats"])
        for name, job in zip(MODELS, jobs):
            for impl in impls:
                r = results[(job.name, impl)]
                rows.append({"model": name, "impl": IMPL_NAMES[impl], "T": T,
                             "ms": 1e3 * r["forward_backward"], "forward_ms": 1e3 * r["forward"],
                             "gflops": 3 * job.flops / r["forward_backward"] / 1e9})
        print(f"T={T:<5} " + "  ".join(f"{r['model']} {r['impl']} {r['ms']:.2f} ms"
                                        for r in rows if r["T"] == T and r["impl"] != "reference"),
              flush=True)
    return rows, fit_slopes(rows, 0), fit_slopes(rows, config["asymptotic_from"])


def fit_slopes(rows, min_T):
    """``{impl: {model: slope}}`` over the rows with ``T >= min_T``."""
    slopes = {}
    for impl in sorted({r["impl"] for r in rows}):
        slopes[impl] = {}
        for name in MODELS:
            sel = [r for r in rows if r["model"] == name and r["impl"] == impl and r["T"] >= min_T]
            slopes[impl][name] = fit_slope([r["T"] for r in sel], [r["ms"] for r in sel])
    return slopes


def _ms(rows, model, impl, T):
    return next((r["ms"] for r in rows if (r["model"], r["impl"], r["T"]) == (model, impl, T)), None)


def _slope_pair(slopes, model):
    if "torch" in slopes:
        return f"{slopes['handprop'][model]:.2f} / {slopes['torch'][model]:.2f}"
    return f"{slopes['handprop'][model]:.2f}"


def summary_header(config, with_torch):
    """The header of the slopes table: both slope columns name what they pair, and the
    PyTorch ratio column is there only with PyTorch."""
    pair = " (handprop / PyTorch)" if with_torch else " (handprop)"
    T_max = config["lengths"][-1]
    return (["model", "params", "slope, all T" + pair, f"slope, T ≥ {config['asymptotic_from']}" + pair,
             f"µs per step at T={T_max}", "GFLOP/s", "time vs conv"]
            + (["handprop / PyTorch"] if with_torch else [])
            + ["fast path speed-up over the NumPy reference"])


def report(config, rows, slopes, tail_slopes, params):
    impls = [i for i in ("handprop", "torch") if any(r["impl"] == i for r in rows)]
    with_torch = "torch" in impls
    header = ["T"] + [f"{m} {i} ms" for i in impls for m in MODELS]
    body = [[str(T)] + [f"{_ms(rows, m, i, T):.2f}" for i in impls for m in MODELS]
            for T in config["lengths"]]
    T_max = config["lengths"][-1]
    conv_ms = _ms(rows, "conv", "handprop", T_max)
    summary = []
    for m in MODELS:
        hp, pt = _ms(rows, m, "handprop", T_max), _ms(rows, m, "torch", T_max)
        ref = _ms(rows, m, "reference", T_max)
        gflops = next(r["gflops"] for r in rows if (r["model"], r["impl"], r["T"]) == (m, "handprop", T_max))
        summary.append([m, f"{params[m]:,}", _slope_pair(slopes, m), _slope_pair(tail_slopes, m),
                        f"{1e3 * hp / T_max:.1f}", f"{gflops:.1f}", f"{hp / conv_ms:.1f}x"]
                       + ([f"{hp / pt:.2f}x"] if with_torch else [])
                       + [f"{ref / hp:.1f}x" if ref else "—"])
    return "\n\n".join([
        f"## Forward+backward time against sequence length (batch {config['batch_size']}, "
        f"{config['features']} features; hidden "
        + ", ".join(f"{h} ({m.upper()})" for m, h in config["hidden"].items())
        + f"; conv {config['channels']} channels)",
        markdown_table(header, body),
        f"## Growth exponents (time ~ T^slope) and the cost at T={T_max}",
        markdown_table(summary_header(config, with_torch), summary),
        "Times and GFLOP/s are handprop's unless marked; \"time vs conv\" compares handprop "
        "models at the longest length."])


def plot(config, rows, slopes, out):
    plt = load_pyplot()
    if plt is None:
        return []
    colors = {"conv": "tab:purple", "rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 5))
    for impl, style in (("handprop", "-o"), ("torch", "--x")):
        if impl not in slopes:
            continue
        for m in MODELS:
            sel = [r for r in rows if r["model"] == m and r["impl"] == impl]
            label = f"{m} {'PyTorch' if impl == 'torch' else impl} (slope {slopes[impl][m]:.2f})"
            ax.loglog([r["T"] for r in sel], [r["ms"] for r in sel], style, color=colors[m],
                      label=label, ms=4)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("forward + backward (ms per batch)")
    ax.set_title(f"Cost against sequence length (batch {config['batch_size']})")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = f"{out}/sequence_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sequence_scaling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="three short lengths, small batch")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--no-reference", action="store_true",
                   help="skip timing handprop's readable NumPy reference path")
    p.add_argument("--threads", type=thread_count, default=1,
                   help="threads for BLAS, numba and PyTorch (default 1)")
    add_out_option(p, COMMITTED_RUNS)
    return resolve_out(p, p.parse_args(argv), COMMITTED_RUNS, torch_needed=True)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    threads = limit_threads(args.threads, torch=not args.no_torch)
    config = dict(QUICK_CONFIG if args.quick else CONFIG)
    torch = torch_for_run(not args.no_torch)
    machine = machine_info(torch)
    print(f"sequence scaling, T={config['lengths']}, load average {machine['load_average']}")
    params = parameter_counts(config)
    rows, slopes, tail_slopes = run(config, torch, not args.no_reference)
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    total = time.perf_counter() - started
    markdown = report(config, rows, slopes, tail_slopes, params) + (
        f"\n\nTotal {total:.0f} s; {args.threads} thread(s); load average "
        f"{machine['load_average']} at start, {machine['load_average_end']} at end.")
    result = {"config": {**config, "threads": threads}, "machine": machine, "total_s": total,
              "params": params, "rows": rows, "slopes": slopes, "slopes_asymptotic": tail_slopes}
    save_report(args.out, "sequence_scaling", result, markdown)
    result["plots"] = plot(config, rows, slopes, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
