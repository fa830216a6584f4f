"""Convolution and pooling workloads for ``benchmarks.kernels``: float32 forward and
forward+backward of one layer, in handprop's fast path, its reference path and PyTorch CPU
(with the same weights and as many threads as numba uses).
"""
import numpy as np
import numba

import layers
import nn
from benchmarks.harness import Workload, try_import_torch

#: (layer factory, input shape, quick input shape)
CASES = [
    (lambda: layers.Conv2D(1, 32, 3, padding=1), (64, 1, 28, 28), (2, 1, 8, 8)),
    (lambda: layers.Conv2D(32, 64, 3, padding=1), (64, 32, 14, 14), (2, 32, 6, 6)),
    (lambda: layers.Conv2D(16, 32, 5, padding=2), (64, 16, 16, 16), (2, 16, 6, 6)),
    (lambda: layers.MaxPool2D(2), (64, 32, 28, 28), (2, 4, 8, 8)),
    (lambda: layers.AvgPool2D(2), (64, 32, 28, 28), (2, 4, 8, 8)),
    (lambda: layers.Conv1D(32, 64, 5, padding=2), (64, 32, 256), (2, 32, 16)),
]


def workload_name(layer, shape):
    """The row's name, from the layer and the input shape it runs on, e.g.
    ``Conv2D 1->32 28x28 k3 p1, N=64`` or ``MaxPool2D 2x2 on (64, 32, 28, 28)``."""
    kind = type(layer).__name__
    if isinstance(layer, layers.Conv2D):
        return (f"{kind} {layer.in_channels}->{layer.out_channels} {shape[2]}x{shape[3]} "
                f"k{layer.kernel_size[0]} p{layer.padding}, N={shape[0]}")
    if isinstance(layer, layers.Conv1D):
        return (f"{kind} {layer.in_channels}->{layer.out_channels} L={shape[2]} "
                f"k{layer.kernel_size[0]} p{layer.padding}, N={shape[0]}")
    return f"{kind} {'x'.join(map(str, layer.kernel_size))} on {tuple(shape)}"


def torch_twin(torch, layer):
    """The PyTorch module computing the same function, with ``layer``'s weights."""
    tnn = torch.nn
    if isinstance(layer, (layers.Conv1D, layers.Conv2D)):
        cls = tnn.Conv2d if isinstance(layer, layers.Conv2D) else tnn.Conv1d
        twin = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                   bias=layer.bias is not None)
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
        return twin
    cls = {layers.MaxPool2D: tnn.MaxPool2d, layers.AvgPool2D: tnn.AvgPool2d}[type(layer)]
    return cls(layer.kernel_size, stride=layer.stride, padding=layer.padding)


def _make(factory, shape):
    def make(impl):
        rng = np.random.default_rng(0)
        nn.seed(0)                                  # every implementation gets the same weights
        layer = factory()
        x = rng.standard_normal(shape).astype(np.float32)
        out_shape = _output_shape(layer, x.shape)
        dy = rng.standard_normal(out_shape).astype(np.float32)
        if impl == "torch":
            return _torch_closures(layer, x, dy)
        reference = impl == "reference"

        def forward():
            with nn.use_reference(reference):
                return layer(x)

        def forward_backward():
            forward()
            return layer.backward(dy)
        return forward, forward_backward
    return make


def _torch_closures(layer, x, dy):
    torch = try_import_torch()
    if torch is None:
        return None
    torch.set_num_threads(numba.get_num_threads())
    twin = torch_twin(torch, layer)
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def forward():
        with torch.no_grad():
            return twin(xt)

    def forward_backward():
        xt.grad = None
        twin(xt).backward(dyt)
    return forward, forward_backward


def _output_shape(layer, shape):
    """Found with the reference path, so that the fast path's first call (the cold time in
    the results) still includes compiling or loading its kernels."""
    with nn.use_reference():
        return layer(np.zeros(shape, dtype=np.float32)).shape


def workloads(quick=False):
    """The benchmark rows; ``quick`` uses tiny shapes (a smoke test, not a measurement) and
    names them so."""
    rows = []
    for factory, shape, quick_shape in CASES:
        shape = quick_shape if quick else shape
        layer = factory()
        flops = layer.flops(shape, _output_shape(layer, shape))
        rows.append(Workload(workload_name(layer, shape), flops, _make(factory, shape)))
    return rows
