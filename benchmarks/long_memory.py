"""Long memory, measured: the adding problem for RNN, LSTM and GRU, and the vanishing gradient
behind the result.

    python -m benchmarks.long_memory            # T = 50, 100, 200 (about 11 minutes, one thread)
    python -m benchmarks.long_memory --quick    # small and short: every code path
    python -m benchmarks.long_memory --lengths 100 --cells lstm

The adding problem (``datasets.adding_problem``): two channels, random values and a marker that
is 1 at two steps, one in each half; the target is the sum of the two marked values, so the
first must be carried across up to T - 1 steps. Predicting the mean scores MSE 1/6 ~ 0.167.

Protocol: a recurrent layer (hidden 128, last step's output only) and a ``Dense(128, 1)`` head,
MSE loss, Adam lr 3e-3, gradients clipped to total norm 1.0 (``optim.clip_grad_norm``), batch
32 of fresh sequences every step, a step budget per length. The test MSE on 500 fixed sequences
is measured every 100 steps; a run stops at the first evaluation below 0.01 and reports that
step, or "not within budget".

The gradient: with the loss on the last step only, ``||dL/dh_t||`` (summed over the batch,
``grad_norms["h"]`` of the recurrent layer after backward) against the distance ``T-1-t`` to the
loss, at initialisation and after training, for T = 100 (the middle length). A tanh RNN's
gradient shrinks geometrically with distance; the LSTM's cell state carries it.

Writes ``long_memory.json``, ``long_memory.md`` and, with matplotlib,
``long_memory_gradients.png`` and ``long_memory_curves.png`` to ``--out``: by default
``benchmarks/results/`` only for a run without options (the one committed there),
``benchmarks/results/quick/`` with ``--quick`` and ``benchmarks/results/custom/`` for any other
run, so that a shorter run never replaces the committed results.
"""
import argparse
import os
import sys
import time

import numpy as np
from tqdm.auto import tqdm

import datasets
import layers
import nn
import optim
from benchmarks.cnn_vs_rnn import fmt, load_pyplot, machine_info, markdown_table, save_report
from benchmarks.harness import (add_out_option, limit_threads, name_list, nonnegative_int, positive_int,
                                resolve_out, thread_count)

CELLS = ("rnn", "lstm", "gru")
BASELINE_MSE = 1.0 / 6.0
CONFIG = {"lengths": (50, 100, 200), "budget": {50: 2000, 100: 3000, 200: 4000},
          "hidden_size": 128, "lr": 3e-3, "clip": 1.0, "batch_size": 32, "eval_every": 100,
          "test_size": 500, "threshold": 0.01, "gradient_T": 100}
QUICK_CONFIG = {"lengths": (10, 20), "budget": {10: 60, 20: 60}, "hidden_size": 16, "lr": 3e-3,
                "clip": 1.0, "batch_size": 16, "eval_every": 20, "test_size": 64,
                "threshold": 0.01, "gradient_T": 20}
#: The options of the run whose results are committed in benchmarks/results/: none.
COMMITTED_RUNS = [{}]


class AddingModel(nn.Module):
    """``y = W h_T + b``: a recurrent layer read at its last step, then a linear head."""

    def __init__(self, cell, hidden_size, input_size=2):
        super().__init__()
        layer_cls = {"rnn": layers.RNN, "lstm": layers.LSTM, "gru": layers.GRU}[cell]
        self.cell = cell
        self.recurrent = layer_cls(input_size, hidden_size, return_sequences=False)
        self.head = layers.Dense(hidden_size, 1)

    def forward(self, x):
        return self.head(self.recurrent(x))

    def backward(self, dy):
        """``dh_T = head.backward(dy)``, then BPTT through the recurrent layer."""
        return self.recurrent.backward(self.head.backward(dy))


def make_model(cell, hidden_size, seed):
    if cell not in CELLS:
        raise ValueError(f"make_model: expected cell in {CELLS}, got {cell!r}")
    nn.seed(seed)
    return AddingModel(cell, hidden_size)


def steps_to_threshold(history, threshold):
    """The first evaluated step whose test MSE is below ``threshold``, else None.

    ``history`` is a list of ``(step, mse)`` in training order.
    """
    for step, mse in history:
        if mse < threshold:
            return step
    return None


def test_mse(model, x, y, chunk=250):
    """Mean squared error over ``(x, y)``, in chunks (the forward keeps a cache per step)."""
    total = 0.0
    for start in range(0, len(x), chunk):
        err = model(x[start:start + chunk]) - y[start:start + chunk]
        total += float(np.sum(err.astype(np.float64) ** 2))
    return total / len(x)


def gradient_profile(model, x, y):
    """``||dL/dh_t||`` for the MSE on ``(x, y)``, indexed by distance to the loss: entry ``d``
    is step ``T-1-d``.

    Computed in float64 (the model is converted and converted back; its float32 values survive
    the round trip exactly), because a vanishing gradient underflows float32 within 100 steps.
    The parameter gradients are cleared afterwards.
    """
    dtype = model.dtype
    model.astype(np.float64)
    try:
        loss_fn = nn.MSELoss()
        model.zero_grad()
        loss_fn(model(x.astype(np.float64)), y.astype(np.float64))
        model.backward(loss_fn.backward())
        norms = np.asarray(model.recurrent.grad_norms["h"][0], dtype=np.float64)
    finally:
        model.astype(dtype)
        model.zero_grad()
    return norms[::-1].copy()


def train_step(model, opt, loss_fn, x, y, clip):
    """One step: forward, loss, backward, the gradients of ``opt``'s parameters clipped to
    total norm ``clip``, then ``opt``'s update."""
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    optim.clip_grad_norm(opt.params, clip)
    opt.step()


def warm_up(cells, config):
    """One untimed step of each cell on a tiny batch, so that loading numba's compiled kernels
    (or compiling them) is not timed as part of the first run."""
    x, y = datasets.adding_problem(2, 3, seed=0)
    for cell in cells:
        model = make_model(cell, config["hidden_size"], seed=0)
        train_step(model, optim.Adam(model.parameters(), lr=config["lr"]), nn.MSELoss(), x, y,
                   config["clip"])


def train_adding(cell, T, config, seed, test):
    """Train one model on the adding problem at length ``T``; returns the run record and the
    trained model."""
    model = make_model(cell, config["hidden_size"], seed)
    opt = optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = nn.MSELoss()
    data_rng = np.random.default_rng(10_000 + seed)
    budget, every = config["budget"][T], config["eval_every"]
    history, seconds = [], 0.0
    bar = tqdm(range(1, budget + 1), desc=f"{cell} T={T}", leave=False, mininterval=1.0)
    for step in bar:
        x, y = datasets.adding_problem(config["batch_size"], T, seed=data_rng)
        start = time.perf_counter()
        train_step(model, opt, loss_fn, x, y, config["clip"])
        seconds += time.perf_counter() - start
        if step % every == 0 or step == budget:
            history.append((step, test_mse(model, *test)))
            bar.set_postfix(mse=f"{history[-1][1]:.4f}", refresh=False)
            if history[-1][1] < config["threshold"]:
                break
    mses = [m for _, m in history]
    record = {"cell": cell, "T": T, "seed": seed, "budget": budget,
              "steps_to_threshold": steps_to_threshold(history, config["threshold"]),
              "steps_run": step, "final_mse": mses[-1] if mses else None,
              "best_mse": min(mses) if mses else None, "train_time_s": seconds,
              "ms_per_step": 1e3 * seconds / step, "history": history}
    return record, model


def run(config, cells, seed):
    """Every (length, cell) run, after an untimed ``warm_up``, plus the gradient profiles at
    ``gradient_T``."""
    warm_up(cells, config)
    runs, profiles = [], {}
    gT = config["gradient_T"]
    probe = datasets.adding_problem(256, gT, seed=7)
    for T in config["lengths"]:
        test = datasets.adding_problem(config["test_size"], T, seed=99)
        for cell in cells:
            record, model = train_adding(cell, T, config, seed, test)
            if T == gT:
                record["gradient_trained"] = gradient_profile(model, *probe)
            runs.append(record)
            reached = record["steps_to_threshold"]
            tqdm.write(f"{cell:>5} T={T:<4} " + (f"MSE < {config['threshold']} at step {reached}"
                                                 if reached else f"not within {record['budget']} steps")
                       + f" (final MSE {record['final_mse']:.4f}, {record['train_time_s']:.0f} s)")
    for cell in cells:
        init = gradient_profile(make_model(cell, config["hidden_size"], seed), *probe)
        trained = next((r.pop("gradient_trained") for r in runs
                        if r["cell"] == cell and r["T"] == gT and "gradient_trained" in r), None)
        profiles[cell] = {"init": init, "trained": trained}
    return runs, profiles


def ratio(profile):
    """``||dL/dh_0|| / ||dL/dh_{T-1}||``: how much of the gradient survives the whole sequence."""
    return None if profile is None else float(profile[-1] / profile[0])


def report(config, runs, profiles, cells):
    header = ["T"] + [f"{c.upper()} steps to MSE < {config['threshold']}" for c in cells] \
        + [f"{c.upper()} final MSE" for c in cells]
    body = []
    for T in config["lengths"]:
        sel = {r["cell"]: r for r in runs if r["T"] == T}
        body.append([str(T)]
                    + [(str(sel[c]["steps_to_threshold"]) if sel[c]["steps_to_threshold"]
                        else f"not within {sel[c]['budget']}") for c in cells]
                    + [fmt(sel[c]["final_mse"], 4) for c in cells])
    gT = config["gradient_T"]
    grad_rows = [[c.upper(), f"{ratio(profiles[c]['init']):.1e}",
                  f"{ratio(profiles[c]['trained']):.1e}" if profiles[c]["trained"] is not None else "—"]
                 for c in cells]
    return "\n\n".join([
        f"## Adding problem: steps until test MSE < {config['threshold']} (baseline {BASELINE_MSE:.3f})",
        f"hidden {config['hidden_size']}, Adam {config['lr']}, clip {config['clip']}, batch "
        f"{config['batch_size']}, evaluated every {config['eval_every']} steps on "
        f"{config['test_size']} test sequences; budgets {config['budget']}.",
        markdown_table(header, body),
        f"## Vanishing gradient: ‖dL/dh_0‖ / ‖dL/dh_{gT - 1}‖ at T={gT} (loss on the last step)",
        markdown_table(["cell", "at initialisation", "after training"], grad_rows)])


def plot(config, runs, profiles, cells, out):
    plt = load_pyplot()
    if plt is None:
        return []
    colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for cell in cells:
            prof = profiles[cell][when]
            if prof is not None:
                ax.semilogy(np.arange(len(prof)), prof, label=cell.upper(), color=colors[cell])
        ax.set_title("at initialisation" if when == "init" else "after training")
        ax.set_xlabel("distance to the loss (steps)")
    axes[0].set_ylabel(r"$\|\partial L / \partial h_t\|$")
    axes[0].legend()
    fig.suptitle(f"Adding problem, T={config['gradient_T']}: the gradient going back in time")
    fig.tight_layout()
    grad_path = f"{out}/long_memory_gradients.png"
    fig.savefig(grad_path, dpi=110)
    plt.close(fig)

    n = len(config["lengths"])
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.5), sharey=True)
    for ax, T in zip(np.atleast_1d(axes), config["lengths"]):
        for r in (r for r in runs if r["T"] == T):
            steps, mses = zip(*r["history"]) if r["history"] else ((), ())
            ax.semilogy(steps, mses, label=r["cell"].upper(), color=colors[r["cell"]])
        ax.axhline(BASELINE_MSE, color="gray", ls=":", label="baseline")
        ax.axhline(config["threshold"], color="black", ls="--", lw=0.8)
        ax.set_title(f"T = {T}")
        ax.set_xlabel("training step")
    np.atleast_1d(axes)[0].set_ylabel("test MSE")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    curve_path = f"{out}/long_memory_curves.png"
    fig.savefig(curve_path, dpi=110)
    plt.close(fig)
    return [grad_path, curve_path]


def lengths_list(text):
    """argparse type for ``--lengths``: distinct comma-separated lengths, each >= 2 (the adding
    problem marks one number in each half of the sequence)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(values) < 2 or len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"expected distinct lengths of at least 2, got {text!r}")
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.long_memory",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models and budgets: every code path")
    p.add_argument("--lengths", type=lengths_list,
                   help="comma-separated sequence lengths (default 50,100,200)")
    p.add_argument("--cells", type=name_list(CELLS), default=list(CELLS),
                   help="comma-separated subset of rnn,lstm,gru")
    p.add_argument("--budget", type=positive_int,
                   help="step budget for every length, at least one evaluation's worth "
                        "(default 2000/3000/4000)")
    p.add_argument("--batch-size", type=positive_int, help="sequences per step (default 32)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--threads", type=thread_count, default=1, help="threads for BLAS and numba (default 1)")
    add_out_option(p, COMMITTED_RUNS)
    args = p.parse_args(argv)
    eval_every = (QUICK_CONFIG if args.quick else CONFIG)["eval_every"]
    if args.budget is not None and args.budget < eval_every:
        p.error(f"--budget {args.budget} is less than one evaluation's worth of steps "
                f"({eval_every}{' in --quick' if args.quick else ''})")
    return resolve_out(p, args, COMMITTED_RUNS, torch_needed=False)


def make_config(args):
    config = dict(QUICK_CONFIG if args.quick else CONFIG)
    if args.lengths:
        config["lengths"] = args.lengths
    lengths = config["lengths"]
    default_budget = config["budget"]
    config["budget"] = {T: args.budget or default_budget.get(T, max(default_budget.values()))
                        for T in lengths}
    if args.batch_size is not None:
        config["batch_size"] = args.batch_size
    if config["gradient_T"] not in lengths:
        config["gradient_T"] = lengths[len(lengths) // 2]
    return config


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    threads = limit_threads(args.threads, torch=False)
    config = make_config(args)
    cells = args.cells
    machine = machine_info()
    print(f"adding problem, T={config['lengths']}, cells {cells}, load average {machine['load_average']}")
    runs, profiles = run(config, cells, args.seed)
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    markdown = report(config, runs, profiles, cells)
    total = time.perf_counter() - started
    markdown += (f"\n\nTotal {total:.0f} s; load average {machine['load_average']} at start, "
                 f"{machine['load_average_end']} at end.")
    result = {"config": {**config, "budget": {str(k): v for k, v in config["budget"].items()},
                         "baseline_mse": BASELINE_MSE, "threads": threads, "seed": args.seed},
              "machine": machine, "total_s": total, "runs": runs,
              "gradients": {c: {"T": config["gradient_T"], "init": p["init"], "trained": p["trained"],
                                "ratio_init": ratio(p["init"]), "ratio_trained": ratio(p["trained"])}
                            for c, p in profiles.items()}}
    save_report(args.out, "long_memory", result, markdown)
    result["plots"] = plot(config, runs, profiles, cells, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
