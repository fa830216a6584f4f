"""Recurrent workloads for ``benchmarks.kernels``: float32 forward and forward+backward of
RNN, LSTM and GRU layers in handprop's fast path, its reference path and PyTorch CPU (same
weights, as many threads as numba uses), plus one Adam training step of a bidirectional
GRU(1->6) on a batch of 100 signals of 40 steps -- the recurrent part of the MNIST-1D GRU --
with a Dense(12->10) on its final states as the head (the full MNIST-1D model, whose head
reads every step, is timed end to end by ``benchmarks.cnn_vs_rnn``).

    python -m benchmarks.kernels --only recurrent
"""
import numba
import numpy as np

import layers
import nn
import optim
from benchmarks.harness import Workload, try_import_torch

#: (layer class, input size, hidden size, input shape (N, T, I), quick input shape)
LAYER_CASES = [
    (layers.LSTM, 28, 128, (64, 28, 28), (2, 3, 28)),
    (layers.LSTM, 2, 128, (64, 100, 2), (2, 3, 2)),
    (layers.GRU, 28, 128, (64, 28, 28), (2, 3, 28)),
    (layers.RNN, 28, 128, (64, 28, 28), (2, 3, 28)),
]
#: The training step's input shape (N, T, 1), and the quick one.
TRAIN_STEP_SHAPE, QUICK_TRAIN_STEP_SHAPE = (100, 40, 1), (2, 5, 1)


def layer_name(cls, hidden_size, shape):
    """A layer row's name, from the shape it runs on, e.g. ``LSTM B64 T28 I28 H128``."""
    N, T, I = shape
    return f"{cls.__name__} B{N} T{T} I{I} H{hidden_size}"


def train_step_name(shape):
    """The training step row's name, from the shape it runs on."""
    return f"BiGRU(1->6)+Dense(12->10) B{shape[0]} T{shape[1]}, Adam step"


def _torch():
    torch = try_import_torch()
    if torch is not None:
        torch.set_num_threads(numba.get_num_threads())
    return torch


def _layer_make(cls, I, H, shape):
    def make(impl):
        rng = np.random.default_rng(0)
        layer = cls(I, H, rng=rng)
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape[:2] + (H,)).astype(np.float32)
        if impl == "torch":
            torch = _torch()
            if torch is None:
                return None
            twin = getattr(torch.nn, cls.__name__)(I, H, batch_first=True)
            twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
            xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

            def forward():
                with torch.no_grad():
                    return twin(xt)

            def forward_backward():
                xt.grad = None
                twin(xt)[0].backward(dyt)
            return forward, forward_backward

        def forward():
            with nn.use_reference(impl == "reference"):
                return layer(x)

        def forward_backward():
            forward()
            return layer.backward(dy)
        return forward, forward_backward
    return make


def _gru_model(rng):
    return nn.Sequential(layers.GRU(1, 6, bidirectional=True, return_sequences=False, rng=rng),
                         layers.Dense(12, 10, rng=rng))


def _train_step_make(shape):
    def make(impl):
        rng = np.random.default_rng(0)
        model = _gru_model(rng)
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, 10, shape[0])
        if impl == "torch":
            return _torch_train_step(model, x, y)
        loss_fn = nn.CrossEntropyLoss()
        opt = optim.Adam(model.parameters(), lr=1e-3)

        def forward():
            with nn.use_reference(impl == "reference"):
                return model(x)

        def train_step():
            with nn.use_reference(impl == "reference"):       # the optimizer's path too
                model.zero_grad()
                loss_fn(model(x), y)
                model.backward(loss_fn.backward())
                opt.step()
        return forward, train_step
    return make


def _torch_train_step(model, x, y):
    torch = _torch()
    if torch is None:
        return None

    class TorchGRUModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(1, 6, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(12, 10)

        def forward(self, x):
            h_n = self.gru(x)[1]                        # (2, N, 6): the last valid step of each direction
            return self.head(torch.cat([h_n[0], h_n[1]], dim=1))

    twin = TorchGRUModel()
    state = model.state_dict()
    twin.gru.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("0.")})
    twin.head.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in state.items() if k.startswith("1.")})
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def forward():
        with torch.no_grad():
            return twin(xt)

    def train_step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(twin(xt), yt).backward()
        opt.step()
    return forward, train_step


def workloads(quick=False):
    """The recurrent rows of the kernel benchmark (tiny shapes with ``quick``, named so)."""
    rows = []
    for cls, I, H, shape, quick_shape in LAYER_CASES:
        shape = quick_shape if quick else shape
        flops = cls(I, H, rng=0).flops(shape, shape[:2] + (H,))
        rows.append(Workload(layer_name(cls, H, shape), flops, _layer_make(cls, I, H, shape)))
    shape = QUICK_TRAIN_STEP_SHAPE if quick else TRAIN_STEP_SHAPE
    model = _gru_model(0)
    flops = model[0].flops(shape, (shape[0], 12)) + model[1].flops((shape[0], 12), (shape[0], 10))
    rows.append(Workload(train_step_name(shape), flops, _train_step_make(shape)))
    return rows
