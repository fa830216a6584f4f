"""Fashion-MNIST end to end: a CNN (or a row-wise LSTM) trained in handprop and, when PyTorch
is installed, the same model from the same initial weights in PyTorch.

    python -m benchmarks.fashion_mnist [--model cnn|lstm] [--epochs N] [--quick] [--no-torch]
                                       [--train-size N] [--json PATH]

Models (Adam, lr 1e-3, batch 64, cross-entropy):

- ``cnn``: the classic two-convolution network -- 5x5 conv 32 'same' + ReLU, max-pool 2,
  5x5 conv 64 'same' + ReLU, max-pool 2, dense 1024 + ReLU, dropout 0.4, dense 10.
- ``lstm``: each image read as 28 steps of 28 pixels, ``LSTM(28, 128)`` whose last hidden
  state feeds ``Dense(128, 10)``.

Prints, per epoch, seconds of training and test accuracy for both frameworks and the time
ratio, as a markdown table, and writes JSON. The data come from
``datasets.load_fashion_mnist()``; ``--quick`` trains one step on a small synthetic set
instead (a smoke test that needs no data files).
"""
import argparse
import json
import time
from pathlib import Path

import numba
import numpy as np
from tqdm.auto import tqdm

import datasets
import layers
import nn
import optim
from benchmarks.harness import try_import_torch

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE, LR = 64, 1e-3


# ----------------------------------------------------------------------------- models

def build(model_name):
    """The handprop model; it takes ``(N, 1, 28, 28)`` (cnn) or ``(N, 28, 28)`` (lstm)."""
    if model_name == "cnn":
        return nn.Sequential(
            layers.Conv2D(1, 32, 5, padding="same"), layers.ReLU(), layers.MaxPool2D(2),
            layers.Conv2D(32, 64, 5, padding="same"), layers.ReLU(), layers.MaxPool2D(2),
            layers.Flatten(), layers.Dense(64 * 7 * 7, 1024), layers.ReLU(), layers.Dropout(0.4),
            layers.Dense(1024, 10))
    if not hasattr(layers, "LSTM"):
        raise SystemExit("--model lstm needs layers.LSTM, which this checkout does not have yet")
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

def load_data(model_name, quick, train_size=None, seed=0):
    """``((x, y), (x_test, y_test))``; quick mode: 64 + 64 synthetic images."""
    if quick:
        rng = np.random.default_rng(seed)
        x = rng.random((128, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 128)
        (x_train, y_train), (x_test, y_test) = (x[:64], y[:64]), (x[64:], y[64:])
    else:
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
        if train_size:
            x_train, y_train = x_train[:train_size], y_train[:train_size]
    if model_name == "lstm":                        # 28 steps of 28 pixels
        x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
    return (x_train, y_train), (x_test, y_test)


# ----------------------------------------------------------------------------- training

def train_handprop(model, train, test, epochs, seed):
    loader = datasets.DataLoader(*train, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
    history = nn.fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=LR), loader,
                     epochs, val_data=test)
    return {"seconds": history["time"], "test_accuracy": history["val_accuracy"],
            "train_loss": history["loss"]}


def train_torch(torch, model, train, test, epochs, seed):
    """The same loop in PyTorch, over the same batches in the same order."""
    loader = datasets.DataLoader(*train, batch_size=BATCH_SIZE, shuffle=True, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    out = {"seconds": [], "test_accuracy": [], "train_loss": []}
    for epoch in range(epochs):
        model.train()
        start, total, n = time.perf_counter(), 0.0, 0
        for xb, yb in tqdm(loader, desc=f"torch epoch {epoch + 1}/{epochs}", leave=False):
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(xb), n + len(xb)
        out["seconds"].append(time.perf_counter() - start)
        out["train_loss"].append(total / n)
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(torch.from_numpy(test[0][i:i + 256])).argmax(1).numpy()
                               == test[1][i:i + 256]).sum()) for i in range(0, len(test[0]), 256))
        out["test_accuracy"].append(correct / len(test[0]))
    return out


def table(results):
    ours, theirs = results["handprop"], results.get("torch")
    lines = ["| epoch | handprop s | handprop test acc | PyTorch s | PyTorch test acc | handprop / PyTorch time |",
             "|---:|---:|---:|---:|---:|---:|"]
    for e, (s, acc) in enumerate(zip(ours["seconds"], ours["test_accuracy"])):
        if theirs:
            ts, tacc = theirs["seconds"][e], theirs["test_accuracy"][e]
            lines.append(f"| {e + 1} | {s:.1f} | {acc:.4f} | {ts:.1f} | {tacc:.4f} | {s / ts:.2f}x |")
        else:
            lines.append(f"| {e + 1} | {s:.1f} | {acc:.4f} | n/a | n/a | n/a |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("cnn", "lstm"), default="cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one step on synthetic data (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch run")
    parser.add_argument("--train-size", type=int, help="train on the first N training images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="default: benchmarks/results/fashion_mnist_MODEL.json")
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else args.epochs

    train, test = load_data(args.model, args.quick, args.train_size, args.seed)
    nn.seed(args.seed)
    model = build(args.model)
    torch = None if args.no_torch else try_import_torch()
    twin = None
    if torch is not None:
        torch.manual_seed(args.seed)
        torch.set_num_threads(numba.get_num_threads())
        twin = build_torch(torch, args.model)
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    print(f"Fashion-MNIST, {args.model}: {len(train[0])} training / {len(test[0])} test images, "
          f"batch {BATCH_SIZE}, Adam lr {LR}, {numba.get_num_threads()} threads"
          f"{' -- quick mode (synthetic data)' if args.quick else ''}")
    results = {"model": args.model, "epochs": epochs, "quick": args.quick,
               "threads": numba.get_num_threads(), "train_size": len(train[0]),
               "handprop": train_handprop(model, train, test, epochs, args.seed)}
    if twin is not None:
        results["torch"] = train_torch(torch, twin, train, test, epochs, args.seed)
    print(table(results))

    path = args.json or ROOT / "benchmarks" / "results" / f"fashion_mnist_{args.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
