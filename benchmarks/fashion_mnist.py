"""Fashion-MNIST end to end: a CNN (or a row-wise LSTM) trained in handprop and, when PyTorch
is installed, the same model from the same initial weights in PyTorch.

    python -m benchmarks.fashion_mnist [--model cnn|lstm] [--epochs N] [--threads N] [--quick]
                                       [--no-torch] [--train-size N] [--seed N] [--data DIR]
                                       [--json PATH]

Models (Adam, lr 1e-3, batch 64, cross-entropy):

- ``cnn``: the classic two-convolution network -- 5x5 conv 32 'same' + ReLU, max-pool 2,
  5x5 conv 64 'same' + ReLU, max-pool 2, dense 1024 + ReLU, dropout 0.4, dense 10.
- ``lstm``: each image read as 28 steps of 28 pixels, ``LSTM(28, 128)`` whose last hidden
  state feeds ``Dense(128, 10)``.

The two frameworks take turns, an epoch each, so that a change in the machine's load hits both
alike, each on ``--threads`` threads (default 1). Prints, per epoch, seconds of training and
test accuracy for both and the time ratio, as a markdown table, and writes JSON (and, with
matplotlib, a PNG of both per epoch beside it). The data come from
``datasets.load_fashion_mnist()`` (with ``--data DIR`` from that folder only); ``--quick``
trains one step on a small synthetic set instead (a smoke test that needs no data files).
Without PyTorch (or with ``--no-torch``) the table has handprop's columns only.

By default the JSON goes to ``benchmarks/results/`` only with the options of a run committed
there (``COMMITTED``, the commands README quotes, PyTorch installed; ``--data`` says only where
the files are); a ``--quick`` run writes to ``benchmarks/results/quick/``, any other to
``benchmarks/results/custom/``, so that no short run replaces a committed result.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import datasets
import layers
import nn
import optim
from benchmarks.cnn_vs_rnn import load_pyplot
from benchmarks.harness import (check_writable, command_line, default_file, destination_help,
                                limit_threads, nonnegative_int, path_arg, positive_int, result_name,
                                thread_count, torch_for_run, write_text)

BATCH_SIZE, LR = 64, 1e-3
#: The committed results and the options of the runs that wrote them (README's Fashion-MNIST
#: table; each ran with PyTorch beside).
COMMITTED = {"fashion_mnist_cnn.json": {"epochs": 1},
             "fashion_mnist_cnn_2threads.json": {"epochs": 1, "threads": 2},
             "fashion_mnist_cnn_6epochs.json": {"epochs": 6},
             "fashion_mnist_lstm.json": {"model": "lstm", "epochs": 20}}


# ----------------------------------------------------------------------------- models

def build(model_name):
    """The handprop model; it takes ``(N, 1, 28, 28)`` (cnn) or ``(N, 28, 28)`` (lstm)."""
    if model_name == "cnn":
        return nn.Sequential(
            layers.Conv2D(1, 32, 5, padding="same"), layers.ReLU(), layers.MaxPool2D(2),
            layers.Conv2D(32, 64, 5, padding="same"), layers.ReLU(), layers.MaxPool2D(2),
            layers.Flatten(), layers.Dense(64 * 7 * 7, 1024), layers.ReLU(), layers.Dropout(0.4),
            layers.Dense(1024, 10))
    return nn.Sequential(layers.LSTM(28, 128, return_sequences=False), layers.Dense(128, 10))


def build_torch(torch, model_name):
    """The same architecture in PyTorch, with the same ``state_dict`` keys."""
    tnn = torch.nn
    if model_name == "cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 5, padding="same"), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(32, 64, 5, padding="same"), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(64 * 7 * 7, 1024), tnn.ReLU(), tnn.Dropout(0.4),
            tnn.Linear(1024, 10))

    class LastStep(tnn.Module):
        """``fc(lstm(x)[:, -1])``, its children named "0" and "1" like the handprop model's."""

        def __init__(self):
            super().__init__()
            self.add_module("0", tnn.LSTM(28, 128, batch_first=True))
            self.add_module("1", tnn.Linear(128, 10))

        def forward(self, x):
            out, _ = self._modules["0"](x)
            return self._modules["1"](out[:, -1])
    return LastStep()


# ----------------------------------------------------------------------------- data

def load_data(model_name, quick, train_size=None, seed=0, folder=None):
    """``((x, y), (x_test, y_test))`` from ``folder``, which must hold the four files (else
    from where ``load_fashion_mnist`` looks); quick mode: 64 + 64 synthetic images."""
    if quick:
        rng = np.random.default_rng(seed)
        x = rng.random((128, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 128)
        (x_train, y_train), (x_test, y_test) = (x[:64], y[:64]), (x[64:], y[64:])
    else:
        # A folder given is the one to read (load_fashion_mnist would look elsewhere too).
        load = datasets.load_fashion_mnist if folder is None else datasets.load_mnist
        (x_train, y_train), (x_test, y_test) = load(folder)
        if train_size:
            x_train, y_train = x_train[:train_size], y_train[:train_size]
    if model_name == "lstm":                        # 28 steps of 28 pixels
        x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
    return (x_train, y_train), (x_test, y_test)


# ----------------------------------------------------------------------------- training

class HandpropRun:
    """handprop's side: ``epoch()`` trains one more epoch with ``nn.fit`` and records it."""

    def __init__(self, model, train, test, seed):
        self.model, self.test = model, test
        self.loader = datasets.DataLoader(*train, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
        self.optimizer = optim.Adam(model.parameters(), lr=LR)
        self.record = {"seconds": [], "test_accuracy": [], "train_loss": []}

    def epoch(self):
        history = nn.fit(self.model, nn.CrossEntropyLoss(), self.optimizer, self.loader, 1,
                         val_data=self.test)
        for key, name in (("seconds", "time"), ("test_accuracy", "val_accuracy"), ("train_loss", "loss")):
            self.record[key] += history[name]


class TorchRun:
    """The same loop in PyTorch, over the same batches in the same order."""

    def __init__(self, torch, model, train, test, seed):
        self.torch, self.model, self.test = torch, model, test
        self.loader = datasets.DataLoader(*train, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.record = {"seconds": [], "test_accuracy": [], "train_loss": []}

    def epoch(self):
        torch, model, (x_test, y_test) = self.torch, self.model, self.test
        model.train()
        start, total, n = time.perf_counter(), 0.0, 0
        for xb, yb in tqdm(self.loader, desc=f"torch epoch {len(self.record['seconds']) + 1}", leave=False):
            self.optimizer.zero_grad()
            loss = self.loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            self.optimizer.step()
            total, n = total + loss.item() * len(xb), n + len(xb)
        self.record["seconds"].append(time.perf_counter() - start)
        self.record["train_loss"].append(total / n)
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(torch.from_numpy(x_test[i:i + 256])).argmax(1).numpy()
                               == y_test[i:i + 256]).sum()) for i in range(0, len(x_test), 256))
        self.record["test_accuracy"].append(correct / len(x_test))


def table(results):
    """Per epoch: seconds and test accuracy of each framework and, with PyTorch, the time ratio."""
    ours, theirs = results["handprop"], results.get("torch")
    if theirs is None:
        lines = ["| epoch | handprop s | handprop test acc |", "|---:|---:|---:|"]
        lines += [f"| {e + 1} | {s:.1f} | {acc:.4f} |"
                  for e, (s, acc) in enumerate(zip(ours["seconds"], ours["test_accuracy"]))]
        return "\n".join(lines)
    lines = ["| epoch | handprop s | handprop test acc | PyTorch s | PyTorch test acc | handprop / PyTorch time |",
             "|---:|---:|---:|---:|---:|---:|"]
    for e, (s, acc) in enumerate(zip(ours["seconds"], ours["test_accuracy"])):
        ts, tacc = theirs["seconds"][e], theirs["test_accuracy"][e]
        lines.append(f"| {e + 1} | {s:.1f} | {acc:.4f} | {ts:.1f} | {tacc:.4f} | {s / ts:.2f}x |")
    return "\n".join(lines)


def plot(results, path):
    """Test accuracy and seconds per epoch of each framework, as ``path`` (a PNG); returns
    ``[path]``, or ``[]`` without matplotlib."""
    plt = load_pyplot()
    if plt is None:
        return []
    fig, (acc, sec) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(results["handprop"]["seconds"]) + 1)
    for name, label, color in (("handprop", "handprop", "tab:blue"), ("torch", "PyTorch", "tab:orange")):
        if name in results:
            acc.plot(epochs, results[name]["test_accuracy"], "o-", label=label, color=color)
            sec.plot(epochs, results[name]["seconds"], "o-", label=label, color=color)
    acc.set_ylabel("test accuracy")
    sec.set_ylabel("seconds per epoch")
    sec.set_ylim(bottom=0)
    for ax in (acc, sec):
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs[::max(1, len(epochs) // 10)])     # whole epochs, at most ~10
        ax.set_xlim(0.5, len(epochs) + 0.5)
        ax.legend()
    fig.suptitle(f"Fashion-MNIST, {results['model'].upper()}, {results['train_size']} training images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def parse_args(argv):
    """The options, with ``json`` the path to write (see the module's docstring for the
    default); every check is made here, before anything is loaded, trained or written."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fashion_mnist",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("cnn", "lstm"), default="cnn")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="threads for BLAS, numba and PyTorch (default 1)")
    parser.add_argument("--quick", action="store_true", help="one step on synthetic data (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch run")
    parser.add_argument("--train-size", type=positive_int, help="train on the first N training images only")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--data", type=Path, help=f"the folder of the four IDX files (default: "
                        f"${datasets.idx.FASHION_MNIST_ENV}, then the Debian package's folder)")
    committed = ", ".join(f"{name} ({command_line(options)})" for name, options in COMMITTED.items())
    parser.add_argument("--json", type=path_arg,
                        help="where to write the results (and the plot beside, as .png), by default "
                             "named fashion_mnist_MODEL[_Nthreads].json " + destination_help(committed))
    args = parser.parse_args(argv)
    if args.quick:
        ignored = [f"--{name.replace('_', '-')}" for name in ("epochs", "train_size", "data")
                   if getattr(args, name) != parser.get_default(name)]
        if ignored:
            parser.error(f"--quick trains one epoch on synthetic data: expected no {' '.join(ignored)}")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        parser.error(f"--data {args.data}: expected the folder of the four IDX files, got a file")
    args.json = args.json or default_file(parser, args, COMMITTED,
                                          result_name("fashion_mnist", args.model, args.threads),
                                          torch_needed=True)
    check_writable(parser, args.json, "--json")
    if args.json.suffix != ".json":
        parser.error(f"--json {args.json}: expected a file name ending in .json (the plot goes beside "
                     "it, as .png)")
    return args


def main(argv=None):
    args = parse_args(argv)
    path = args.json
    epochs = 1 if args.quick else args.epochs
    threads = limit_threads(args.threads, torch=not args.no_torch)
    try:
        train, test = load_data(args.model, args.quick, args.train_size, args.seed, args.data)
    except FileNotFoundError as e:
        raise SystemExit(f"--data {e}\n{datasets.idx.FASHION_MNIST_HOWTO} and pass their folder."
                         if args.data else f"{e}\nHere: --data /that/folder.") from None
    nn.seed(args.seed)
    model = build(args.model)
    runs = {"handprop": HandpropRun(model, train, test, args.seed)}
    torch = torch_for_run(not args.no_torch)
    if torch is not None:
        torch.manual_seed(args.seed)
        twin = build_torch(torch, args.model)
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        runs["torch"] = TorchRun(torch, twin, train, test, args.seed)

    print(f"Fashion-MNIST, {args.model}: {len(train[0])} training / {len(test[0])} test images, "
          f"batch {BATCH_SIZE}, Adam lr {LR}, {args.threads} thread(s)"
          f"{' -- quick mode (synthetic data)' if args.quick else ''}")
    results = {"model": args.model, "epochs": epochs, "quick": args.quick, "threads": threads,
               "train_size": len(train[0]), **{name: run.record for name, run in runs.items()}}
    for _ in range(epochs):
        for run in runs.values():
            run.epoch()
        write_text(path, json.dumps(results, indent=2))       # after every epoch: a long run can be stopped
    print(table(results))
    for written in [path] + plot(results, path.with_suffix(".png")):
        print(f"wrote {written}")
    return results


if __name__ == "__main__":
    main()
