"""An empty batch (N = 0, as a data split that happens to be empty gives) goes through every
layer on both paths: an empty output of the shape a full batch would have, an empty input
gradient, zero parameter gradients. Layers that need samples say so."""
import numpy as np
import pytest

import layers
import nn

LAYERS = [
    (lambda: layers.Dense(4, 3), (4,)),
    (lambda: layers.ReLU(), (4,)),
    (lambda: layers.LeakyReLU(), (4,)),
    (lambda: layers.Tanh(), (4,)),
    (lambda: layers.Sigmoid(), (4,)),
    (lambda: layers.Softmax(), (4,)),
    (lambda: layers.Flatten(), (2, 3)),
    (lambda: layers.Dropout(0.5), (4,)),
    (lambda: layers.Conv2D(4, 4, 3, padding=1, groups=2), (4, 5, 5)),
    (lambda: layers.Conv1D(4, 6, 3, groups=2), (4, 7)),
    (lambda: layers.MaxPool2D(2), (3, 4, 4)),
    (lambda: layers.AvgPool2D(3, stride=2, padding=1), (3, 5, 5)),
    (lambda: layers.MaxPool1D(2), (3, 6)),
    (lambda: layers.AvgPool1D(2), (3, 6)),
    (lambda: layers.GlobalAvgPool2D(), (3, 4, 4)),
    (lambda: layers.BatchNorm1D(3).eval(), (3,)),
    (lambda: layers.BatchNorm2D(3).eval(), (3, 4, 4)),
    (lambda: layers.LayerNorm(4), (4,)),
]


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("make,sample_shape", LAYERS)
def test_empty_batch_flows_through(make, sample_shape, reference):
    layer = make()
    with nn.use_reference(reference):
        full = layer(np.ones((2,) + sample_shape, np.float32))
        layer.zero_grad()
        y = layer(np.ones((0,) + sample_shape, np.float32))
    assert y.shape == (0,) + full.shape[1:] and y.dtype == np.float32
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == (0,) + sample_shape and dx.dtype == np.float32
    assert all(not p.grad.any() for p in layer.parameters())


def test_empty_batch_of_token_ids():
    embedding = layers.Embedding(10, 3)
    y = embedding(np.zeros((0, 5), np.int64))
    assert y.shape == (0, 5, 3)
    embedding.backward(np.ones_like(y))
    assert not embedding.weight.grad.any()


@pytest.mark.parametrize("make,shape,message", [
    (lambda: layers.BatchNorm1D(3), (0, 3), r"BatchNorm1D: expected more than 1 value per channel "
                                            r"when training, got input \(0, 3\)"),
    (lambda: layers.BatchNorm2D(3), (0, 3, 4, 4), r"BatchNorm2D: expected more than 1 value per "
                                                  r"channel when training, got input \(0, 3, 4, 4\)"),
    (lambda: layers.LSTM(4, 5), (0, 6, 4), r"LSTM: expected at least one sequence and one step, "
                                           r"got input of shape \(0, 6, 4\)"),
])
def test_layers_that_need_samples_say_so(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(np.ones(shape, np.float32))
