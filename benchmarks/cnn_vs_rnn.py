"""CNN versus RNN on MNIST-1D, measured -- and the classic comparison checked claim by claim.

Run right after install (the data ships with handprop)::

    python -m benchmarks.cnn_vs_rnn                # 1 seed, PyTorch side by side (under 10 min)
    python -m benchmarks.cnn_vs_rnn --quick        # every code path in under a minute
    python -m benchmarks.cnn_vs_rnn --seeds 3 --torch-full   # the accuracy claims, 3 seeds (committed)
    python -m benchmarks.cnn_vs_rnn --no-torch --out DIR
    python -m benchmarks.cnn_vs_rnn --claims-only  # after rerunning long_memory or sequence_scaling

What it measures
----------------
1. The MNIST-1D paper's benchmark (Greydanus & Kobak, 2020) with its protocol: Adam lr 1e-2,
   batch 100 taken in order from the training set (``bix = step * 100 % 4000``), steps 0..8000,
   cross-entropy; accuracy = 100 * mean(argmax(logits) == y) over the 1000 test signals after
   the last step. Models: logistic regression, the residual MLP, the 3-layer CNN, the
   bidirectional GRU of the paper, and LSTM and tanh-RNN rows built like the GRU
   (``benchmarks/mnist1d_models.py``). For each: test accuracy, parameters, training wall time
   (forward + backward + Adam, evaluation excluded) and, with PyTorch installed, the same model
   trained in PyTorch from the same initial weights on the same batches -- the two take turns
   step by step, so a busy machine slows both alike. PyTorch's recurrent layers are slow on a
   CPU at this size, so by default their twins are timed on the first 1000 steps (their
   accuracy needs ``--torch-full``); the others train fully. The shuffled variant (the 40
   positions permuted) is run for the MLP (a control: it cannot see order), the CNN and the GRU.
2. "The classic comparison, measured": one row per textbook claim about CNNs and RNNs (data
   type, processing style, parameter sharing, strengths, weaknesses) with the number from this
   run -- or from ``long_memory.json`` / ``sequence_scaling.json`` in the same output folder
   when those benchmarks have been run (a run other than ``--quick`` not finding them there
   reads the ones in ``benchmarks/results/``, where their own runs write) -- that backs or
   refutes it. ``--claims-only`` trains
   nothing: it rebuilds this table from the ``cnn_vs_rnn.json`` already in the folder and those
   two files as they are now, so rerunning either benchmark does not cost a rerun of this one.

Prints markdown, writes ``cnn_vs_rnn.json`` and ``cnn_vs_rnn.md`` and, with matplotlib,
``mnist1d_accuracy.png`` and ``mnist1d_time.png`` to ``--out``. By default that is
``benchmarks/results/`` only for the runs whose results are committed there
(``COMMITTED_RUNS``: ``--seeds 3 --torch-full`` with PyTorch installed, and ``--claims-only``);
a ``--quick`` run writes to ``benchmarks/results/quick/``, any other to
``benchmarks/results/custom/``, so that no shorter run replaces the committed results. Without
PyTorch the run says so and trains handprop only. Both libraries run single-threaded by
default (``--threads``): for models this small, a second thread costs more in synchronisation
than it saves, and on a shared machine a spinning thread pool can slow PyTorch by an order of
magnitude.
"""
import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import datasets
import nn
import optim
from benchmarks.harness import (RESULTS, add_out_option, limit_threads, name_list, positive_int,
                                resolve_out, thread_count, torch_for_run, try_import_torch)
from benchmarks.mnist1d_models import (LABELS, MODELS, RECURRENT, build, build_torch,
                                       copy_to_torch, count_parameters)

PROTOCOL = {"lr": 1e-2, "batch_size": 100, "steps": 8000, "eval_every": 250}
QUICK_PROTOCOL = {"lr": 1e-2, "batch_size": 100, "steps": 20, "eval_every": 20}
SHUFFLED_MODELS = ("mlp", "cnn", "gru")
# The options that shape a training run, refused with --claims-only, which trains nothing.
TRAINING_OPTIONS = ("seeds", "no_torch", "torch_full", "models", "threads")
#: The options of the runs whose results are committed in benchmarks/results/ (the MNIST-1D
#: table of README, and its classic comparison rebuilt after long_memory and sequence_scaling).
COMMITTED_RUNS = [{"seeds": 3, "torch_full": True}, {"claims_only": True}]
# PyTorch's recurrent twins are slow on CPU (its bidirectional GRU several times slower a step
# than handprop's, see README): by default they are timed on a window of steps, in lockstep
# like the others; --quick times them on a window too, shorter than its run.
TORCH_WINDOW = 1000
QUICK_TORCH_WINDOW = 10
# Test accuracy (%) reported by Greydanus & Kobak (2020) on MNIST-1D, and on its shuffled variant.
PAPER = {"logistic": 32.0, "mlp": 68.0, "cnn": 94.0, "gru": 91.0}
PAPER_SHUFFLED = {"logistic": 32.0, "mlp": 68.0, "cnn": 56.0, "gru": 57.0}


# ----------------------------------------------------------------------------- shared helpers

def machine_info(torch=None):
    """Where and under what load the numbers were measured, and with which PyTorch (``torch``,
    the module the run timed beside handprop; None when it ran without)."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None, "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M")}


def load_pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a message) when not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: skipping the plots (pip install -e ".[bench]")')
        return None
    return plt


def markdown_table(header, rows):
    """A GitHub markdown table; numbers are expected already formatted as strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _finite_or_none(obj.item())
    return _finite_or_none(obj)


def save_report(out, name, result, markdown):
    """Write ``name.json`` (non-finite numbers as null) and ``name.md`` to ``out``; print the
    markdown. Returns the JSON path."""
    out = Path(out)
    print(markdown)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown + "\n")
    print(f"\nwrote {path} and {name}.md")
    return path


def fmt(value, digits=1, suffix=""):
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else f"{value:.{digits}f}{suffix}"


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# ----------------------------------------------------------------------------- training

def accuracy(logits, y):
    """The mnist1d package's accuracy: percent of argmax predictions equal to the label."""
    return 100.0 * float(np.mean(np.asarray(logits).argmax(-1) == y))


def batch_at(step, x, y, batch_size):
    """The package's batching: consecutive slices, wrapping around the training set."""
    start = (step * batch_size) % len(x)
    return x[start:start + batch_size], y[start:start + batch_size]


class _Trainer:
    """A model with its optimizer: ``step(xb, yb)``, ``predict(x)``; built from ``(model, lr)``."""

    def fresh_copy(self):
        """A trainer of a copy of the model, for untimed warm-up steps."""
        return type(self)(copy.deepcopy(self.model), self.lr)


class HandpropTrainer(_Trainer):
    """One handprop model with its Adam optimizer and cross-entropy loss."""

    impl = "handprop"

    def __init__(self, model, lr):
        self.model, self.lr, self.loss_fn = model, lr, nn.CrossEntropyLoss()
        self.opt = optim.Adam(model.parameters(), lr=lr)

    def step(self, xb, yb):
        self.model.zero_grad()
        loss = self.loss_fn(self.model(xb), yb)
        self.model.backward(self.loss_fn.backward())
        self.opt.step()
        return loss

    def predict(self, x):
        return self.model(x)


class TorchTrainer(_Trainer):
    """The PyTorch twin: the same step, written the way the mnist1d package writes it."""

    impl = "torch"

    def __init__(self, model, lr):
        self.torch = try_import_torch()
        self.model, self.lr = model, lr
        self.loss_fn = self.torch.nn.CrossEntropyLoss()
        self.opt = self.torch.optim.Adam(model.parameters(), lr)

    def step(self, xb, yb):
        loss = self.loss_fn(self.model(self.torch.from_numpy(xb)), self.torch.from_numpy(yb))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return loss.item()

    def predict(self, x):
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(x)).numpy()


def train_lockstep(trainers, limits, data, protocol, desc):
    """Train every trainer on the same batches, taking turns step by step; trainer ``i`` takes
    the first ``limits[i]`` steps only (a PyTorch twin may be timed on a window of steps). A
    step of a copy of each, first, keeps one-off costs out of the times.

    Returns one result per trainer: the test-accuracy curve (every ``eval_every`` steps), the
    final test and train accuracy (None when the trainer stopped early) and the training time
    (steps only, evaluation excluded).
    """
    (x, y), (x_test, y_test) = data
    steps, batch_size, every = protocol["steps"], protocol["batch_size"], protocol["eval_every"]
    for t in trainers:      # first calls load numba's cache (or compile) and warm PyTorch up: untimed
        t.fresh_copy().step(*batch_at(0, x, y, batch_size))
    seconds = [0.0] * len(trainers)
    curves = [[] for _ in trainers]
    bar = tqdm(range(steps + 1), desc=desc, leave=False, mininterval=1.0)
    for step in bar:
        xb, yb = batch_at(step, x, y, batch_size)
        active = [i for i in range(len(trainers)) if step < limits[i]]
        for i in active:
            start = time.perf_counter()
            trainers[i].step(xb, yb)
            seconds[i] += time.perf_counter() - start
        if step % every == 0 or step == steps:
            for i in active:
                curves[i].append((step, accuracy(trainers[i].predict(x_test), y_test)))
            bar.set_postfix(acc=" / ".join(f"{curves[i][-1][1]:.1f}" for i in active), refresh=False)
    results = []
    for i, t in enumerate(trainers):
        complete = limits[i] > steps
        results.append({
            "impl": t.impl, "steps_trained": min(limits[i], steps + 1), "complete": complete,
            "test_accuracy": curves[i][-1][1] if complete else None,
            "train_accuracy": accuracy(t.predict(x), y) if complete else None,
            "train_time_s": seconds[i], "ms_per_step": 1e3 * seconds[i] / min(limits[i], steps + 1),
            "curve": curves[i]})
    return results


def run_model(name, shuffled, seed, data, protocol, torch_steps):
    """Train the handprop model once (and its PyTorch twin for ``torch_steps`` steps, none
    when None); returns a list of run records."""
    model = build(name, seed)
    trainers, limits = [HandpropTrainer(model, protocol["lr"])], [protocol["steps"] + 1]
    if torch_steps:
        twin = copy_to_torch(model, build_torch(name))
        trainers.append(TorchTrainer(twin, protocol["lr"]))
        limits.append(torch_steps)
    variant = "shuffled" if shuffled else "ordered"
    results = train_lockstep(trainers, limits, data, protocol, f"{name} {variant} seed {seed}")
    params = count_parameters(model)
    for r in results:
        r.update(model=name, variant=variant, seed=seed, params=params)
    return results


def _run_line(r):
    acc = f"{r['test_accuracy']:.1f}%" if r["complete"] else f"timed on {r['steps_trained']} steps"
    return f"{r['impl']} {acc}, {r['ms_per_step']:.2f} ms/step"


def torch_plan(models, shuffled, full_steps, with_torch, torch_full, window=TORCH_WINDOW):
    """The jobs ``(model, shuffled, torch_steps)``: how many steps each PyTorch twin trains
    (None: no twin). By default the fast twins train fully, the recurrent ones are timed on
    ``window`` steps and the shuffled rows run in handprop only."""
    def steps(name, is_shuffled):
        if not with_torch or (is_shuffled and not torch_full):
            return None
        if torch_full or name not in RECURRENT:
            return full_steps
        return min(window, full_steps)
    return [(m, False, steps(m, False)) for m in models] + [(m, True, steps(m, True)) for m in shuffled]


def run_benchmark(jobs, seeds, protocol):
    """Every job ``(model, shuffled, torch_steps)`` once per seed; returns all run records."""
    data = {False: datasets.load_mnist1d(shuffle=False), True: datasets.load_mnist1d(shuffle=True)}
    runs = []
    for seed in range(seeds):
        for name, shuffled, torch_steps in jobs:
            results = run_model(name, shuffled, seed, data[shuffled], protocol, torch_steps)
            runs += results
            tqdm.write(f"{name:>8} {results[0]['variant']:>8} seed {seed}: "
                       + "; ".join(_run_line(r) for r in results))
    return runs


def summarize(runs):
    """One row per (model, variant): accuracies as mean and std over seeds, times, ratio."""
    rows = []
    keys = list(dict.fromkeys((r["model"], r["variant"]) for r in runs))
    for model, variant in keys:
        row = {"model": model, "variant": variant, "label": LABELS[model],
               "paper": (PAPER if variant == "ordered" else PAPER_SHUFFLED).get(model)}
        for impl in ("handprop", "torch"):
            sel = [r for r in runs if (r["model"], r["variant"], r["impl"]) == (model, variant, impl)]
            done = [r["test_accuracy"] for r in sel if r["complete"]]
            acc, std = mean_std(done)
            row[impl] = None if not sel else {
                "test_accuracy": acc, "test_accuracy_std": std, "seeds": len(done), "per_seed": done,
                "steps_trained": sel[0]["steps_trained"],
                "train_time_s": statistics.fmean(r["train_time_s"] for r in sel),
                "ms_per_step": statistics.fmean(r["ms_per_step"] for r in sel)}
            if sel:
                row["params"] = sel[0]["params"]
        both = row["handprop"] and row["torch"]
        row["time_ratio"] = (row["handprop"]["ms_per_step"] / row["torch"]["ms_per_step"]
                             if both else None)
        rows.append(row)
    return rows


def _acc_cell(entry):
    if entry is None:
        return "—"
    if entry["test_accuracy"] is None:
        return f"— (timed {entry['steps_trained']} steps)"
    if entry["seeds"] > 1:
        return f"{entry['test_accuracy']:.1f} ± {entry['test_accuracy_std']:.1f}"
    return f"{entry['test_accuracy']:.1f}"


def results_table(rows):
    header = ["model", "params", "paper %", "handprop %", "PyTorch %", "handprop ms/step",
              "PyTorch ms/step", "time handprop / PyTorch", "handprop train s"]
    body = []
    for row in rows:
        name = row["label"] + (" — shuffled" if row["variant"] == "shuffled" else "")
        hp, pt = row["handprop"], row["torch"]
        body.append([name, f"{row['params']:,}", fmt(row["paper"], 0), _acc_cell(hp), _acc_cell(pt),
                     fmt(hp and hp["ms_per_step"], 2), fmt(pt and pt["ms_per_step"], 2),
                     fmt(row["time_ratio"], 2, "x"), fmt(hp and hp["train_time_s"], 0)])
    return markdown_table(header, body)


# ----------------------------------------------------------------------------- the classic claims

def parameter_sharing(lengths=(40, 400)):
    """Per model and input length: all parameters, and those of the layer whose size depends
    on the length (the MLP's first layer; the CNN's and GRU's flattening heads)."""
    out = {}
    for name in ("mlp", "cnn", "gru"):
        out[name] = {}
        for L in lengths:
            model = build(name, seed=0, input_size=L)
            total = count_parameters(model)
            growing = count_parameters(model.linear1 if name == "mlp" else model.linear)
            out[name][L] = {"total": total, "body": total - growing, "input_dependent": growing}
    return out


def step_timing(with_torch, batch_size=100, repeats=7, length=40):
    """Forward+backward milliseconds per sample at T = ``length`` for the MNIST-1D models
    (median of ``repeats``, handprop and PyTorch taking turns), and the number of dependent
    steps each must run one after another. As in training, PyTorch skips the input's gradient
    (one channel or feature here), which handprop's ``backward`` always returns."""
    from benchmarks.harness import Workload, measure

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, length)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    torch = try_import_torch() if with_torch else None

    def make(name):
        def factory(impl):
            if impl == "fast":
                model, loss_fn = build(name, 0, length), nn.CrossEntropyLoss()

                def fwd_bwd():
                    model.zero_grad()
                    loss_fn(model(x), y)
                    model.backward(loss_fn.backward())
                return (lambda: model(x)), fwd_bwd
            if impl == "torch" and torch is not None:
                model = build_torch(name, length)
                xt, yt = torch.from_numpy(x), torch.from_numpy(y)

                def fwd_bwd():
                    model.zero_grad()
                    torch.nn.functional.cross_entropy(model(xt), yt).backward()
                return (lambda: model(xt)), fwd_bwd
            return None
        return factory

    names = ("cnn", "gru", "lstm", "rnn")
    results = measure([Workload(n, 0.0, make(n)) for n in names], impls=("fast", "torch"),
                      repeats=repeats)
    out = {}
    for n in names:
        hp, pt = results.get((n, "fast")), results.get((n, "torch"))
        out[n] = {"handprop_ms_per_sample": 1e3 * hp["forward_backward"] / batch_size,
                  "torch_ms_per_sample": 1e3 * pt["forward_backward"] / batch_size if pt else None,
                  "sequential_steps": 3 if n == "cnn" else length,
                  "sequential_note": ("3 layers, each one product over all positions"
                                      if n == "cnn" else f"{length} dependent steps per direction")}
    return out


def gradient_ratios(quick):
    """||dL/dh_0|| / ||dL/dh_{T-1}|| at initialisation for RNN, LSTM and GRU on the adding problem
    (loss on the last step only): the geometric mean over 3 initialisations."""
    from benchmarks.long_memory import gradient_profile, make_model, ratio

    T, hidden = (30, 16) if quick else (100, 128)
    x, y = datasets.adding_problem(256, T, seed=123)
    out = {"T": T, "hidden_size": hidden}
    for cell in ("rnn", "lstm", "gru"):
        ratios = []
        for seed in range(3):
            norms = gradient_profile(make_model(cell, hidden, seed), x, y)
            ratios.append(ratio(norms))
        out[cell] = float(np.exp(np.mean(np.log(ratios))))
    return out


def load_sibling(out, name):
    """The JSON another benchmark wrote to the same folder, or None."""
    path = Path(out) / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _row(rows, model, variant="ordered"):
    for r in rows:
        if (r["model"], r["variant"]) == (model, variant) and r["handprop"]:
            return r
    return None


def _acc(rows, model, variant="ordered"):
    r = _row(rows, model, variant)
    return r["handprop"]["test_accuracy"] if r else None


def claim_rows(rows, sharing, timing, grads, long_memory, scaling):
    """The classic comparison, one claim per row, each with its measured evidence and verdict."""
    claims = []

    def add(aspect, claim, evidence, verdict):
        claims.append({"aspect": aspect, "claim": claim, "evidence": evidence, "verdict": verdict})

    # Data type: spatial/ordered structure. Shuffling destroys locality but not information.
    drops = {m: (_acc(rows, m), _acc(rows, m, "shuffled")) for m in ("mlp", "cnn", "gru")}
    if all(None not in v for v in drops.values()):
        d = {m: a - s for m, (a, s) in drops.items()}
        text = "; ".join(f"{m.upper()} {a:.1f}% → {s:.1f}% ({a - s:.1f} pts lost)"
                         for m, (a, s) in drops.items())
        ok = d["cnn"] > 10 and d["gru"] > 10 and abs(d["mlp"]) < 5
        add("data type", "CNNs suit grid-like data where neighbours belong together; RNNs suit "
            "ordered sequences. A model without that prior (MLP) does not care about order.",
            f"MNIST-1D accuracy, ordered vs positions permuted: {text}",
            f"backed: without locality the CNN loses {d['cnn']:.0f} points and the GRU "
            f"{d['gru']:.0f}, the order-blind MLP {d['mlp']:.1f} points" if ok else "not backed by this run")
    # Parameter sharing.
    c40, c400 = sharing["cnn"][40], sharing["cnn"][400]
    g40, g400 = sharing["gru"][40], sharing["gru"][400]
    m40, m400 = sharing["mlp"][40], sharing["mlp"][400]
    add("parameter sharing", "A CNN shares each filter across positions, an RNN its cell across "
        "time steps, so neither grows with the input length; a dense layer does.",
        f"input length 40 → 400: conv layers {c40['body']:,} → {c400['body']:,} params, GRU cell "
        f"{g40['body']:,} → {g400['body']:,}; MLP first layer {m40['input_dependent']:,} → "
        f"{m400['input_dependent']:,}; (the paper's flattening heads grow: CNN "
        f"{c40['input_dependent']:,} → {c400['input_dependent']:,}, GRU "
        f"{g40['input_dependent']:,} → {g400['input_dependent']:,})",
        "backed" if c40["body"] == c400["body"] and g40["body"] == g400["body"] else "refuted")
    # Processing style.
    if timing:
        cnn, gru = timing["cnn"], timing["gru"]
        add("processing style", "A CNN sees the whole signal at once (parallel over positions); "
            "an RNN reads it one step at a time (sequential).",
            f"dependent steps at T=40: CNN {cnn['sequential_steps']} layers vs GRU "
            f"{gru['sequential_steps']} steps per direction; forward+backward per sample, GRU / CNN: "
            + _time_ratios(timing, "gru", "cnn"),
            "backed in structure (the step count); what it costs in time depends on the "
            "implementation, see the ratios")
    # Strengths: local patterns.
    if _acc(rows, "cnn") is not None and _acc(rows, "mlp") is not None:
        a_cnn, a_mlp = _acc(rows, "cnn"), _acc(rows, "mlp")
        p_cnn, p_mlp = _row(rows, "cnn")["params"], _row(rows, "mlp")["params"]
        add("CNN strength", "Local pattern detection that works wherever the pattern sits "
            "(translation equivariance), with few parameters.",
            f"CNN {a_cnn:.1f}% with {p_cnn:,} params vs MLP {a_mlp:.1f}% with {p_mlp:,} params",
            "backed" if a_cnn > a_mlp and p_cnn < p_mlp else "refuted")
    if _acc(rows, "gru") is not None and _acc(rows, "mlp") is not None:
        cnn_text = f" (CNN {_acc(rows, 'cnn'):.1f}%)" if _acc(rows, "cnn") is not None else ""
        add("RNN strength", "Carries a memory of everything read so far, with the same weights "
            "for any length.",
            f"GRU {_acc(rows, 'gru'):.1f}% with a {g40['body']:,}-parameter cell vs MLP "
            f"{_acc(rows, 'mlp'):.1f}%{cnn_text}" + _long_memory_text(long_memory, ("gru", "lstm"), 200),
            _memory_verdict(_acc(rows, "gru"), _acc(rows, "mlp"),
                            _adding_runs(long_memory, ("gru", "lstm"), 200)))
    # Weakness: long-term dependencies; and the LSTM's fix.
    trained = _trained_ratios(long_memory)
    init_text = (f"‖dL/dh_0‖ / ‖dL/dh_{grads['T'] - 1}‖ (loss on the last step, T={grads['T']}) at "
                 f"initialisation: RNN {grads['rnn']:.1e}, LSTM {grads['lstm']:.1e}, GRU {grads['gru']:.1e}")
    add("RNN weakness", "Plain RNNs struggle with long-term dependencies: the gradient vanishes "
        "as it goes back in time.",
        init_text + _trained_text(trained) + _long_memory_text(long_memory, ("rnn",), 100),
        _weakness_verdict(grads["rnn"], (trained.get("rnn") or {}).get("ratio")))
    add("LSTM / GRU", "LSTM's gated cell state (and the GRU's gates) fix this.",
        _fix_text(grads, trained) + _long_memory_text(long_memory, ("rnn", "lstm", "gru"), 100),
        _fix_verdict(grads, trained, _adding_runs(long_memory, ("rnn", "lstm"), 100)))
    # Weakness: slow for long sequences.
    add("RNN weakness", "Slower processing for long sequences: the steps cannot run in parallel.",
        _scaling_text(scaling, timing), _scaling_verdict(scaling, timing))
    return claims


#: A gradient has vanished when less than this fraction of it reaches the first step.
VANISHED = 1e-3


def _memory_verdict(gru, mlp, adding):
    """Backed when the GRU, reading one value per step, beats the MLP, which sees the whole
    signal at once, by more than 10 points on MNIST-1D -- and, when the adding problem ran at
    the length shown (``adding``, ``{cell: run}``), a gated cell carried the first number
    across it."""
    carried = not adding or any(run["steps_to_threshold"] is not None for run in adding.values())
    return "backed" if gru > mlp + 10 and carried else "not backed by this run"


def _trained_ratios(long_memory):
    """``{cell: {"ratio": ||dL/dh_0|| / ||dL/dh_{T-1}||, "T": T}}`` after training on the
    adding problem at length ``T``, from ``long_memory.json`` (cells without one left out)."""
    gradients = (long_memory or {}).get("gradients", {})
    return {cell: {"ratio": g["ratio_trained"], "T": g["T"]}
            for cell, g in gradients.items() if g.get("ratio_trained") is not None}


def _trained_text(trained):
    """``; after training on the adding problem at T=100: RNN 4.6e-27, LSTM 9.4e-02``: each
    ratio of ``_trained_ratios`` under the length it was measured at."""
    by_length = {}
    for cell, g in trained.items():
        by_length.setdefault(g["T"], []).append(f"{cell.upper()} {g['ratio']:.1e}")
    return "".join(f"; after training on the adding problem at T={T}: " + ", ".join(parts)
                   for T, parts in by_length.items())


def _weakness_verdict(at_init, after_training):
    """Whether the tanh RNN's gradient vanishes (ratio below ``VANISHED``), at initialisation
    and, when ``long_memory`` has run, after training."""
    if at_init >= VANISHED or (after_training is not None and after_training >= VANISHED):
        return "not backed by this run"
    if after_training is None:
        return "backed at initialisation (run benchmarks.long_memory for after training)"
    return "backed"


def _fix_text(grads, trained):
    text = (f"at initialisation (T={grads['T']}) LSTM / RNN gradient ratio = "
            f"{grads['lstm'] / grads['rnn']:.0e}")
    lstm, rnn = trained.get("lstm"), trained.get("rnn")
    if lstm and rnn and lstm["T"] == rnn["T"]:
        text += (f"; after training (T={lstm['T']}) LSTM {lstm['ratio']:.1e} vs RNN {rnn['ratio']:.1e} "
                 f"({lstm['ratio'] / rnn['ratio']:.0e}x)")
    return text


def _fix_verdict(grads, trained, adding):
    """Whether the LSTM fixes the RNN's vanishing gradient, judged on what the row shows: the
    adding problem at T=100 (``adding``, ``{cell: run}``) when both ran it, else the gradients
    after training (``_trained_ratios``, at one length), else those at initialisation."""
    caveat = ("; but only after training: at initialisation (forget-gate biases drawn around 0 "
              "like every bias, PyTorch's default, without the +1 some add) the LSTM's gradient "
              "vanishes too -- it learns to open its forget gates")
    lstm, rnn = trained.get("lstm"), trained.get("rnn")
    if "lstm" in adding and "rnn" in adding:
        fixed = (adding["lstm"]["steps_to_threshold"] is not None
                 and adding["rnn"]["steps_to_threshold"] is None)
        verdict = "backed" if fixed else "not backed by this run"
    elif lstm and rnn and lstm["T"] == rnn["T"]:
        fixed = lstm["ratio"] >= VANISHED > rnn["ratio"]
        verdict = ("backed" if fixed else "not backed by this run") + (
            f" (on the gradients after training at T={lstm['T']}: the LSTM's ratio must stay at "
            f"or above {VANISHED:g}, the RNN's fall below)")
    else:
        return ("not at initialisation: both vanish (run benchmarks.long_memory for the trained "
                "picture)" if grads["lstm"] < VANISHED else "backed at initialisation")
    return verdict + (caveat if fixed and grads["lstm"] < VANISHED else "")


def _adding_runs(long_memory, cells, T):
    """``{cell: run}``: the adding-problem runs of ``cells`` at length ``T`` in ``long_memory``."""
    return {run["cell"]: run for run in (long_memory or {}).get("runs", [])
            if run["cell"] in cells and run["T"] == T}


def _long_memory_text(long_memory, cells, T):
    if not long_memory:
        return " (run benchmarks.long_memory for the adding problem)"
    parts = []
    for cell, run in _adding_runs(long_memory, cells, T).items():
        reached = run["steps_to_threshold"]
        parts.append(f"{cell.upper()} " + (f"reaches MSE < {long_memory['config']['threshold']} "
                                           f"in {reached} steps" if reached else
                                           f"not within {run['budget']} steps (MSE "
                                           f"{run['final_mse']:.3f})"))
    return f"; adding problem T={T}: " + ", ".join(parts) if parts else ""


def _time_ratios(timing, a, b):
    """``"handprop Rx (a_ms vs b_ms ms), PyTorch Rx (...)"``: model a's time over b's."""
    parts = []
    for impl, key in (("handprop", "handprop_ms_per_sample"), ("PyTorch", "torch_ms_per_sample")):
        ta, tb = timing[a][key], timing[b][key]
        if ta and tb:
            parts.append(f"{impl} {ta / tb:.2f}x ({ta:.3f} vs {tb:.3f} ms)")
    return ", ".join(parts)


def _scaling_point(scaling, model, impl="handprop"):
    rows = [r for r in scaling.get("rows", []) if r["model"] == model and r["impl"] == impl]
    return max(rows, key=lambda r: r["T"]) if rows else None


def _scaling_ratios(scaling, impl):
    """``{model: time / conv's time}`` at the longest length, for ``impl``."""
    points = {m: _scaling_point(scaling, m, impl) for m in ("conv", "rnn", "lstm", "gru")}
    if any(p is None for p in points.values()):
        return None
    return {m: p["ms"] / points["conv"]["ms"] for m, p in points.items() if m != "conv"}


def _scaling_text(scaling, timing):
    if scaling:
        T = _scaling_point(scaling, "conv")["T"]
        slopes, low = scaling["slopes_asymptotic"]["handprop"], scaling["config"]["asymptotic_from"]
        parts = []
        for impl, label in (("handprop", "handprop"), ("torch", "PyTorch")):
            ratios = _scaling_ratios(scaling, impl)
            if ratios:
                parts.append(f"{label} " + ", ".join(f"{m.upper()} {r:.1f}x" for m, r in ratios.items()))
        return (f"forward+backward at T={T} relative to a Conv1D stack, all about 16k parameters: "
                + "; ".join(parts) + f". Log-log slopes (T ≥ {low}, handprop) "
                + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
    if timing:
        return ("GRU / CNN at T=40: " + _time_ratios(timing, "gru", "cnn")
                + " (run benchmarks.sequence_scaling for T up to 1000)")
    return "not measured"


def _scaling_verdict(scaling, timing):
    """Backed when the gated cells cost clearly more than the convolution (> 1.5x) at the
    longest length, weakly between 1x and 1.5x, refuted below -- per implementation."""
    if not scaling:
        return "run benchmarks.sequence_scaling for the measurement"
    verdicts = []
    for impl, label in (("handprop", "handprop"), ("torch", "PyTorch")):
        ratios = _scaling_ratios(scaling, impl)
        if not ratios:
            continue
        worst = max(ratios["lstm"], ratios["gru"])
        word = "backed" if worst > 1.5 else "weakly backed" if worst > 1.0 else "refuted"
        verdicts.append(f"{word} in {label} (gated cells up to {worst:.1f}x)")
    return ("; ".join(verdicts) + ". Every model grows linearly in T; on one CPU thread a "
            "convolution's parallelism buys little, so the gap is the per-step overhead of the loop")


def claims_table(claims):
    return markdown_table(["aspect", "claim", "measured", "verdict"],
                          [[c["aspect"], c["claim"], c["evidence"], c["verdict"]] for c in claims])


# ----------------------------------------------------------------------------- plots

COLORS = {"paper": "tab:gray", "handprop": "tab:blue", "PyTorch": "tab:orange"}


def plot(rows, out, protocol=PROTOCOL, threads=1):
    plt = load_pyplot()
    if plt is None:
        return []
    out = Path(out)
    names = [r["label"].split(" (")[0] + (" shuf." if r["variant"] == "shuffled" else "") for r in rows]
    xs = np.arange(len(rows))
    series = [("paper", [r["paper"] for r in rows], None)]
    for impl, label in (("handprop", "handprop"), ("torch", "PyTorch")):
        entries = [r[impl] or {} for r in rows]
        series.append((label, [e.get("test_accuracy") for e in entries],
                       [e.get("test_accuracy_std") or 0.0 for e in entries]))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.27
    for k, (label, values, errors) in enumerate(series):
        v = [np.nan if a is None else a for a in values]
        errors = errors if errors and any(errors) else None
        ax.bar(xs + (k - 1) * width, v, width, yerr=errors, capsize=2, label=label,
               color=COLORS[label])
    ax.set_xticks(xs, names, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    seeds = max((r["handprop"] or {}).get("seeds", 1) for r in rows)
    ax.set_title(f"MNIST-1D, the paper's protocol (Adam {protocol['lr']:g}, batch "
                 f"{protocol['batch_size']}, {protocol['steps']} steps)"
                 + (f"; mean ± std over {seeds} seeds" if seeds > 1 else ""))
    ax.legend()
    fig.tight_layout()
    acc_path = out / "mnist1d_accuracy.png"
    fig.savefig(acc_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    for k, impl in enumerate(("handprop", "torch")):
        v = [r[impl]["ms_per_step"] if r[impl] else np.nan for r in rows]
        label = "PyTorch" if impl == "torch" else impl
        ax.bar(xs + (k - 0.5) * 0.4, v, 0.4, label=label, color=COLORS[label])
    ax.set_xticks(xs, names, rotation=20, ha="right")
    ax.set_ylabel("ms per training step (batch 100)")
    ax.set_yscale("log")
    each = "one thread" if threads == 1 else f"{threads} threads"
    ax.set_title(f"Forward + backward + Adam, same batches, taking turns ({each} each)")
    ax.legend()
    fig.tight_layout()
    time_path = out / "mnist1d_time.png"
    fig.savefig(time_path, dpi=110)
    plt.close(fig)
    return [str(acc_path), str(time_path)]


# ----------------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.cnn_vs_rnn",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="few steps, every code path (< 1 min): the recurrent PyTorch twins timed on "
                        f"their first {QUICK_TORCH_WINDOW} steps, the others trained fully")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per model (default 1)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch twins")
    p.add_argument("--torch-full", action="store_true",
                   help="train every PyTorch twin for all steps, shuffled rows too (default: full for "
                        f"logistic, MLP, CNN; the recurrent twins timed on their first {TORCH_WINDOW} steps)")
    p.add_argument("--models", type=name_list(MODELS), default=list(MODELS),
                   help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--threads", type=thread_count, default=1,
                   help="threads for BLAS, numba and PyTorch (default 1)")
    p.add_argument("--claims-only", action="store_true",
                   help="train nothing: rebuild the classic comparison from the cnn_vs_rnn.json in "
                        "--out and the long_memory.json / sequence_scaling.json there now")
    add_out_option(p, COMMITTED_RUNS)
    args = p.parse_args(argv)
    if args.no_torch and args.torch_full:
        p.error("--torch-full trains PyTorch's twins fully: expected it without --no-torch")
    if args.claims_only:
        training = [f"--{name.replace('_', '-')}" for name in TRAINING_OPTIONS
                    if getattr(args, name) != p.get_default(name)]
        if training:
            p.error(f"--claims-only trains nothing: expected no training options, got {' '.join(training)}")
    return resolve_out(p, args, COMMITTED_RUNS, torch_needed=not args.claims_only)


def main(argv=None):
    args = parse_args(argv)
    if args.claims_only:
        return rebuild_claims(args.out)
    started = time.perf_counter()
    threads = limit_threads(args.threads, torch=not args.no_torch)
    protocol = dict(QUICK_PROTOCOL if args.quick else PROTOCOL)
    torch = torch_for_run(not args.no_torch)
    with_torch = torch is not None
    models = args.models
    shuffled = [m for m in SHUFFLED_MODELS if m in models]
    jobs = torch_plan(models, shuffled, protocol["steps"] + 1, with_torch, args.torch_full,
                      QUICK_TORCH_WINDOW if args.quick else TORCH_WINDOW)
    machine = machine_info(torch)
    print(f"MNIST-1D, {protocol['steps']} steps, seeds {args.seeds}, threads {args.threads}, "
          f"load average {machine['load_average']}")

    phases = {}
    t0 = time.perf_counter()
    runs = run_benchmark(jobs, args.seeds, protocol)
    phases["mnist1d_training_s"] = time.perf_counter() - t0
    rows = summarize(runs)

    t0 = time.perf_counter()
    sharing = parameter_sharing()
    timing = step_timing(with_torch, repeats=3 if args.quick else 7)
    grads = gradient_ratios(args.quick)
    phases["claims_s"] = time.perf_counter() - t0
    claims = claim_rows(rows, sharing, timing, grads,
                        *load_siblings(args.out, fallback=None if args.quick else RESULTS))

    phases["total_s"] = time.perf_counter() - started
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"config": {"protocol": protocol, "seeds": args.seeds, "quick": args.quick,
                         "jobs": [{"model": m, "shuffled": sh, "torch_steps": t} for m, sh, t in jobs],
                         "paper": PAPER, "paper_shuffled": PAPER_SHUFFLED, "threads": threads},
              "machine": machine, "phases": phases, "rows": rows, "runs": runs,
              "parameter_sharing": sharing, "timing": timing, "gradient_ratios": grads,
              "claims": claims}
    save_report(args.out, "cnn_vs_rnn", result, report_markdown(result))
    result["plots"] = plot(rows, args.out, protocol, args.threads) if rows else []
    return result


def report_markdown(result):
    """The printed report of a run: the MNIST-1D table, the classic comparison, the run's cost."""
    config, machine, phases = result["config"], result["machine"], result["phases"]
    seeds = config["seeds"]
    parts = [f"## MNIST-1D: the paper's models and protocol ({config['protocol']['steps']} steps, "
             f"{seeds} seed{'s' if seeds > 1 else ''})",
             results_table(result["rows"]),
             "## The classic comparison, measured",
             claims_table(result["claims"]),
             f"Total {phases['total_s']:.0f} s (training {phases['mnist1d_training_s']:.0f} s, claims "
             f"{phases['claims_s']:.0f} s); {config['threads']['threads']} thread(s); load average "
             f"{machine['load_average']} at start, {machine['load_average_end']} at end."]
    if "claims_rebuilt" in result:
        rebuilt = result["claims_rebuilt"]
        sources = ", ".join(f"{name}.json of {date}" if date else f"no {name}.json"
                            for name, date in rebuilt["sources"].items())
        parts.append(f"The classic comparison rebuilt on {rebuilt['date']} (`--claims-only`) from "
                     f"this run's measurements and {sources}.")
    return "\n\n".join(parts)


def load_siblings(out, fallback=None):
    """``long_memory.json`` and ``sequence_scaling.json`` from ``out``, else from ``fallback``
    (each None if absent)."""
    def load(name):
        found = load_sibling(out, name)
        return found if found is not None or fallback is None else load_sibling(fallback, name)
    return load("long_memory"), load("sequence_scaling")


def rebuild_claims(out):
    """``--claims-only``: the classic comparison of the ``cnn_vs_rnn.json`` in ``out`` rebuilt
    with the sibling benchmarks' current results; rewrites its JSON and markdown."""
    path = Path(out) / "cnn_vs_rnn.json"
    result = load_sibling(out, "cnn_vs_rnn")
    needed = ("config", "machine", "phases", "rows", "parameter_sharing", "timing", "gradient_ratios")
    if not isinstance(result, dict) or not all(k in result for k in needed):
        raise SystemExit(f"--claims-only: expected a cnn_vs_rnn.json written by a run of this script "
                         f"at {path}, got " + ("no such file" if not path.exists() else
                                               "a file without its measurements"))
    # JSON turned the input lengths, the keys of each model's parameter counts, into strings.
    sharing = {model: {int(length): counts for length, counts in by_length.items()}
               for model, by_length in result["parameter_sharing"].items()}
    long_memory, scaling = load_siblings(out)
    result["claims"] = claim_rows(result["rows"], sharing, result["timing"],
                                  result["gradient_ratios"], long_memory, scaling)
    result["claims_rebuilt"] = {"date": time.strftime("%Y-%m-%d %H:%M"), "sources": {
        name: (sibling or {}).get("machine", {}).get("date")
        for name, sibling in (("long_memory", long_memory), ("sequence_scaling", scaling))}}
    save_report(out, "cnn_vs_rnn", result, report_markdown(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
