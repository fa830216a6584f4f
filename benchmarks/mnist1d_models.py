"""The MNIST-1D paper's models (Greydanus & Kobak, 2020), each built twice: in handprop and in
PyTorch, with the same parameter names so one ``state_dict`` fits both.

The architectures are those of the ``mnist1d`` project's ``models.py``:

- ``logistic``: ``LinearBase``, one ``Linear(40, 10)``.
- ``mlp``: ``MLPBase``, 100 hidden units with a residual second layer:
  ``h = relu(W1 x)``, ``h = h + relu(W2 h)``, ``y = W3 h``.
- ``cnn``: ``ConvBase``, three ``Conv1d`` layers of 25 channels (kernel 5 stride 2 padding 1,
  then kernel 3 stride 2 padding 1 twice; ReLU after each), the ``(25, 5)`` feature map
  flattened (channel-major) into a ``Linear(125, 10)``.
- ``gru``: ``GRUBase``, a bidirectional GRU with 6 hidden units reading the signal one sample
  per step (``(N, 40, 1)``, zero initial state); the outputs of ALL 40 steps, both
  directions, are flattened (``(N, 40 * 12)``, time-major) into a ``Linear(480, 10)``.
- ``lstm``, ``rnn``: the same model with an LSTM or a plain tanh RNN in place of the GRU.

Every model takes the raw signals ``(N, 40)`` (float32) and returns logits ``(N, 10)``; it
adds the channel or feature axis itself, as the original models do.

>>> hp, pt = twins("cnn", seed=0)   # handprop model, PyTorch model with the same weights
"""
import numpy as np

import layers
import nn

MODELS = ("logistic", "mlp", "cnn", "gru", "lstm", "rnn")
RECURRENT = ("gru", "lstm", "rnn")
LABELS = {"logistic": "logistic regression", "mlp": "MLP (100, residual)",
          "cnn": "CNN (3 x Conv1D 25)", "gru": "GRU (bi, 6)", "lstm": "LSTM (bi, 6)",
          "rnn": "tanh RNN (bi, 6)"}


def conv_output_length(length):
    """Length of ConvBase's last feature map for an input of ``length`` samples (5 for 40)."""
    for kernel in (5, 3, 3):
        length = (length + 2 - kernel) // 2 + 1
    return length


# ----------------------------------------------------------------------------- handprop twins

class LogisticRegression(nn.Module):
    """``y = W x + b`` on the 40 raw samples (the package's ``LinearBase``)."""

    def __init__(self, input_size=40, output_size=10):
        super().__init__()
        self.linear = layers.Dense(input_size, output_size)

    def forward(self, x):
        return self.linear(x)

    def backward(self, dy):
        """``dx = linear.backward(dy)``."""
        return self.linear.backward(dy)


class MLP(nn.Module):
    """The package's ``MLPBase``: ``h1 = relu(W1 x)``, ``h = h1 + relu(W2 h1)``, ``y = W3 h``."""

    def __init__(self, input_size=40, output_size=10, hidden_size=100):
        super().__init__()
        self.linear1 = layers.Dense(input_size, hidden_size)
        self.linear2 = layers.Dense(hidden_size, hidden_size)
        self.linear3 = layers.Dense(hidden_size, output_size)
        self.relu1, self.relu2 = layers.ReLU(), layers.ReLU()

    def forward(self, x):
        h1 = self.relu1(self.linear1(x))
        h = h1 + self.relu2(self.linear2(h1))
        return self.linear3(h)

    def backward(self, dy):
        """The residual branch adds its gradient to the skip's:
        ``dh1 = dh + linear2.backward(relu2.backward(dh))``."""
        dh = self.linear3.backward(dy)
        dh1 = dh + self.linear2.backward(self.relu2.backward(dh))
        return self.linear1.backward(self.relu1.backward(dh1))


class ConvNet(nn.Module):
    """The package's ``ConvBase``: three Conv1D + ReLU, flatten, linear head."""

    def __init__(self, input_size=40, output_size=10, channels=25):
        super().__init__()
        self.conv1 = layers.Conv1D(1, channels, 5, stride=2, padding=1)
        self.conv2 = layers.Conv1D(channels, channels, 3, stride=2, padding=1)
        self.conv3 = layers.Conv1D(channels, channels, 3, stride=2, padding=1)
        self.linear = layers.Dense(channels * conv_output_length(input_size), output_size)
        self.relu1, self.relu2, self.relu3 = layers.ReLU(), layers.ReLU(), layers.ReLU()
        self.flatten = layers.Flatten()

    def _chain(self):
        return [self.conv1, self.relu1, self.conv2, self.relu2, self.conv3, self.relu3,
                self.flatten, self.linear]

    def forward(self, x):
        h = x[:, None, :]                       # (N, 40) -> (N, 1, 40): one input channel
        for layer in self._chain():
            h = layer(h)
        return h

    def backward(self, dy):
        """Chain rule through the layers in reverse; the channel axis is dropped at the end."""
        for layer in reversed(self._chain()):
            dy = layer.backward(dy)
        return dy[:, 0, :]


class RecurrentNet(nn.Module):
    """The package's ``GRUBase`` with a choice of cell: a (bidirectional) recurrent layer
    reads ``(N, T, 1)``; every step's output is flattened into one linear classifier."""

    def __init__(self, cell="gru", input_size=40, output_size=10, hidden_size=6,
                 bidirectional=True):
        super().__init__()
        if cell not in RECURRENT:
            raise ValueError(f"RecurrentNet: expected cell in {RECURRENT}, got {cell!r}")
        self.cell = cell
        layer_cls = {"gru": layers.GRU, "lstm": layers.LSTM, "rnn": layers.RNN}[cell]
        setattr(self, cell, layer_cls(1, hidden_size, bidirectional=bidirectional))
        directions = 2 if bidirectional else 1
        self.linear = layers.Dense(directions * hidden_size * input_size, output_size)

    @property
    def recurrent(self):
        return getattr(self, self.cell)

    def forward(self, x):
        out = self.recurrent(x[:, :, None])     # (N, T) -> (N, T, 1) -> (N, T, D*H)
        self._out_shape = out.shape
        return self.linear(out.reshape(len(x), -1))

    def backward(self, dy):
        """``dout = linear.backward(dy)`` reshaped to ``(N, T, D*H)``, then BPTT in the layer."""
        dout = self.linear.backward(dy).reshape(self._out_shape)
        return self.recurrent.backward(dout)[:, :, 0]


def build(name, seed=None, input_size=40):
    """The handprop model ``name`` (one of ``MODELS``); ``seed`` fixes its initial weights."""
    if name not in MODELS:
        raise ValueError(f"build: expected a model name in {MODELS}, got {name!r}")
    if seed is not None:
        nn.seed(seed)
    if name == "logistic":
        return LogisticRegression(input_size)
    if name == "mlp":
        return MLP(input_size)
    if name == "cnn":
        return ConvNet(input_size)
    return RecurrentNet(name, input_size)


# ----------------------------------------------------------------------------- PyTorch twins

def _torch_classes():
    """The package's models in PyTorch (class bodies as in ``mnist1d``'s ``models.py``)."""
    import torch
    from torch import nn as tnn

    class LinearBase(tnn.Module):
        def __init__(self, input_size, output_size):
            super().__init__()
            self.linear = tnn.Linear(input_size, output_size)

        def forward(self, x):
            return self.linear(x)

    class MLPBase(tnn.Module):
        def __init__(self, input_size, output_size, hidden_size=100):
            super().__init__()
            self.linear1 = tnn.Linear(input_size, hidden_size)
            self.linear2 = tnn.Linear(hidden_size, hidden_size)
            self.linear3 = tnn.Linear(hidden_size, output_size)

        def forward(self, x):
            h = self.linear1(x).relu()
            h = h + self.linear2(h).relu()
            return self.linear3(h)

    class ConvBase(tnn.Module):
        def __init__(self, output_size, channels=25, linear_in=125):
            super().__init__()
            self.conv1 = tnn.Conv1d(1, channels, 5, stride=2, padding=1)
            self.conv2 = tnn.Conv1d(channels, channels, 3, stride=2, padding=1)
            self.conv3 = tnn.Conv1d(channels, channels, 3, stride=2, padding=1)
            self.linear = tnn.Linear(linear_in, output_size)

        def forward(self, x):
            x = x.view(-1, 1, x.shape[-1])
            h1 = self.conv1(x).relu()
            h2 = self.conv2(h1).relu()
            h3 = self.conv3(h2).relu()
            h3 = h3.view(h3.shape[0], -1)
            return self.linear(h3)

    class RecurrentBase(tnn.Module):
        def __init__(self, cell, output_size, hidden_size=6, time_steps=40, bidirectional=True):
            super().__init__()
            layer_cls = {"gru": tnn.GRU, "lstm": tnn.LSTM, "rnn": tnn.RNN}[cell]
            self.cell = cell
            setattr(self, cell, layer_cls(input_size=1, hidden_size=hidden_size,
                                          batch_first=True, bidirectional=bidirectional))
            flat_size = (2 if bidirectional else 1) * hidden_size * time_steps
            self.linear = tnn.Linear(flat_size, output_size)
            self.hidden_size, self.bidirectional = hidden_size, bidirectional

        def forward(self, x):
            x = x.view(*x.shape[:2], 1)
            k = 2 if self.bidirectional else 1
            h0 = torch.zeros(k, x.shape[0], self.hidden_size, dtype=x.dtype)
            state = (h0, torch.zeros_like(h0)) if self.cell == "lstm" else h0
            output, _ = getattr(self, self.cell)(x, state)
            output = output.reshape(output.shape[0], -1)
            return self.linear(output)

    return LinearBase, MLPBase, ConvBase, RecurrentBase


def build_torch(name, input_size=40):
    """The PyTorch model ``name`` (raises ImportError without torch)."""
    if name not in MODELS:
        raise ValueError(f"build_torch: expected a model name in {MODELS}, got {name!r}")
    LinearBase, MLPBase, ConvBase, RecurrentBase = _torch_classes()
    if name == "logistic":
        return LinearBase(input_size, 10)
    if name == "mlp":
        return MLPBase(input_size, 10)
    if name == "cnn":
        return ConvBase(10, linear_in=25 * conv_output_length(input_size))
    return RecurrentBase(name, 10, time_steps=input_size)


def copy_to_torch(model, torch_model):
    """Load the handprop ``model``'s weights into ``torch_model`` through ``state_dict``: the
    keys and shapes are the same, so nothing is renamed or reshaped. Returns ``torch_model``."""
    import torch
    state = {key: torch.from_numpy(np.ascontiguousarray(value))
             for key, value in model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
    return torch_model


def twins(name, seed=None, input_size=40, with_torch=True):
    """``(handprop_model, torch_model)`` starting from identical weights; the torch model is
    None when ``with_torch`` is False."""
    model = build(name, seed, input_size)
    if not with_torch:
        return model, None
    return model, copy_to_torch(model, build_torch(name, input_size))


def count_parameters(model):
    """Number of trainable scalars of a handprop or a PyTorch model."""
    return int(sum(p.numel() if callable(getattr(p, "numel", None)) else p.data.size
                   for p in model.parameters()))
