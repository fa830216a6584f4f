"""Forward and backward hooks: when they fire, what they see, what they may replace."""
import re

import numpy as np
import pytest

import nn
import layers


def make_model():
    nn.seed(0)
    return nn.Sequential(layers.Dense(3, 4), layers.ReLU(), layers.Dense(4, 2)).astype(np.float64)


def batch():
    return np.random.default_rng(1).standard_normal((5, 3))


def test_forward_hooks_fire_in_forward_order_with_the_arrays_passed_along():
    model = make_model()
    calls = []

    def hook(module, inputs, output):
        calls.append((module, inputs, output))

    for m in model:
        m.register_forward_hook(hook)
    model.register_forward_hook(hook)
    x = batch()
    y = model(x)

    assert [c[0] for c in calls] == [model[0], model[1], model[2], model]
    for module, inputs, output in calls:
        assert isinstance(inputs, tuple) and len(inputs) == 1
    assert calls[0][1][0] is x                     # the first layer sees the caller's array
    for (_, _, out), (_, inputs, _) in zip(calls[:2], calls[1:3]):
        assert inputs[0] is out                    # each layer sees the previous one's output
    assert calls[2][2] is y and calls[3][2] is y   # the model's output is the last layer's
    assert calls[3][1][0] is x


def test_backward_hooks_fire_in_reverse_order_with_the_gradients_passed_along():
    model = make_model()
    calls = []

    def hook(module, grad_input, grad_output):
        calls.append((module, grad_input, grad_output))

    for m in model:
        m.register_backward_hook(hook)
    model.register_backward_hook(hook)
    x = batch()
    dy = np.random.default_rng(2).standard_normal(model(x).shape)
    dx = model.backward(dy)

    assert [c[0] for c in calls] == [model[2], model[1], model[0], model]
    assert calls[0][2] is dy                       # the last layer receives the caller's dy
    for (_, grad_in, _), (_, _, grad_out) in zip(calls[:2], calls[1:3]):
        assert grad_out is grad_in                 # dL/dx of one layer is dL/dy of the one before
    assert calls[2][1] is dx and calls[3][1] is dx
    assert calls[3][2] is dy
    # the values are the chain rule's: dL/dx of the last Dense is dy @ W
    np.testing.assert_array_equal(calls[0][1], dy @ model[2].weight.data)
    assert calls[0][1].shape == (5, 4) and calls[2][1].shape == x.shape


def test_forward_hook_can_replace_the_output():
    model = make_model()
    x = batch()
    plain = model(x)
    seen = {}

    def zero_second_unit(module, inputs, output):
        out = output.copy()
        out[:, 1] = 0.0
        seen["replaced"] = out
        return out

    def record_input(module, inputs, output):
        seen["next_input"] = inputs[0]

    model[1].register_forward_hook(zero_second_unit)
    model[2].register_forward_hook(record_input)
    y = model(x)
    assert seen["next_input"] is seen["replaced"]     # the next layer got the replacement
    h = np.maximum(x @ model[0].weight.data.T + model[0].bias.data, 0)
    h[:, 1] = 0.0
    np.testing.assert_allclose(y, h @ model[2].weight.data.T + model[2].bias.data, rtol=1e-12)
    assert not np.allclose(y, plain)


def test_backward_hook_can_replace_grad_input():
    model = make_model()
    x = batch()
    dy = np.ones(model(x).shape)

    def block(module, grad_input, grad_output):
        return np.zeros_like(grad_input)

    handle = model[1].register_backward_hook(block)
    model.zero_grad()
    dx = model.backward(dy)
    assert np.all(dx == 0)
    assert np.all(model[0].weight.grad == 0) and np.all(model[0].bias.grad == 0)
    assert np.any(model[2].weight.grad != 0)        # layers after the hook are unaffected

    handle.remove()
    model.zero_grad()
    model(x)
    assert np.any(model.backward(dy) != 0)
    assert np.any(model[0].weight.grad != 0)


def test_forward_pre_hooks_fire_before_forward_and_can_replace_the_input():
    layer = layers.Dense(3, 2).astype(np.float64)
    x = batch()
    order = []

    def double(module, inputs):
        order.append(("double", module, inputs[0]))
        return 2 * inputs[0]                       # one value: stands for a one-element tuple

    def shift(module, inputs):
        order.append(("shift", module, inputs[0]))
        return (inputs[0] + 1,)

    layer.register_forward_pre_hook(double)
    layer.register_forward_pre_hook(shift)
    layer.register_forward_hook(lambda m, inputs, out: order.append(("forward", m, inputs[0])))
    y = layer(x)
    assert [(name, m) for name, m, _ in order] == [("double", layer), ("shift", layer), ("forward", layer)]
    assert order[0][2] is x
    np.testing.assert_array_equal(order[1][2], 2 * x)
    np.testing.assert_array_equal(order[2][2], 2 * x + 1)    # the forward hook sees the replacement
    W, b = layer.weight.data, layer.bias.data
    np.testing.assert_allclose(y, (2 * x + 1) @ W.T + b, rtol=1e-12)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    # backward differentiates the layer at its replaced input, as if the hooks were the identity
    np.testing.assert_allclose(layer.backward(dy), dy @ W, rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, dy.T @ (2 * x + 1), rtol=1e-12)


@pytest.mark.parametrize("replacement, got", [(lambda x: x[:, :1], "float64 (5, 1)"),
                                              (lambda x: (x.astype(np.float32),), "float32"),
                                              (lambda x: (x, x), "2 arguments to replace 1")])
def test_a_forward_pre_hooks_replacement_must_look_like_the_input(replacement, got):
    model = make_model()
    x = batch()
    y = model(x)

    def bad(module, inputs):
        return replacement(inputs[0])

    model[1].register_forward_pre_hook(bad)
    with pytest.raises(ValueError, match=rf"ReLU.forward: the forward pre-hook 'bad' returned {re.escape(got)}"):
        model(x)
    with pytest.raises(ValueError, match="after a forward that failed"):
        model.backward(np.ones(y.shape))
    h = x @ model[0].weight.data.T + model[0].bias.data
    # the refused call left the ReLU's last forward standing
    np.testing.assert_array_equal(model[1].backward(np.ones(h.shape)), h > 0)


def test_a_forward_pre_hook_stops_after_remove_and_is_not_copied_for_gradcheck():
    layer = layers.Dense(3, 2).astype(np.float64)
    handle = layer.register_forward_pre_hook(lambda m, inputs: np.zeros_like(inputs[0]))
    x = batch()
    np.testing.assert_array_equal(layer(x), np.broadcast_to(layer.bias.data, (5, 2)))
    assert nn.gradcheck(layer, x).passed           # a copy without the hook: the input is checked
    handle.remove()
    assert np.any(layer(x) != layer.bias.data)


@pytest.mark.parametrize("replacement, got", [(lambda g: np.zeros(7), "float64 (7,)"),
                                              (lambda g: g.astype(np.float32), "float32"),
                                              (lambda g: g.tolist(), "list")])
def test_a_backward_hooks_replacement_must_look_like_dx(replacement, got):
    model = make_model()
    y = model(batch())

    def bad(module, grad_input, grad_output):
        return replacement(grad_input)

    model[1].register_backward_hook(bad)
    with pytest.raises(ValueError, match=f"the backward hook 'bad' returned {re.escape(got)}"):
        model.backward(np.ones(y.shape))


@pytest.mark.parametrize("replacement, got", [(lambda y: y[:, :1], "float64 (5, 1)"),
                                              (lambda y: y.astype(np.float32), "float32"),
                                              (lambda y: y.tolist(), "list")])
def test_a_forward_hooks_replacement_must_look_like_the_output(replacement, got):
    model = make_model()

    def bad(module, inputs, output):
        return replacement(output)

    model[1].register_forward_hook(bad)
    with pytest.raises(ValueError, match=rf"ReLU.forward: the forward hook 'bad' returned {re.escape(got)}.* "
                                         r"to replace the output, which is float64 \(5, "):
        model(batch())


def test_hooks_stop_after_remove():
    model = make_model()
    fired = []
    f = model[0].register_forward_hook(lambda m, i, o: fired.append("forward"))
    b = model[0].register_backward_hook(lambda m, gi, go: fired.append("backward"))
    x = batch()
    model.backward(np.ones(model(x).shape))
    assert fired == ["forward", "backward"]
    f.remove()
    b.remove()
    b.remove()                                     # removing twice is harmless
    model.backward(np.ones(model(x).shape))
    assert fired == ["forward", "backward"]


def test_removing_one_hook_keeps_the_others_in_registration_order():
    layer = layers.Dense(3, 2).astype(np.float64)
    order = []
    handles = [layer.register_forward_hook(lambda m, i, o, k=k: order.append(k)) for k in range(3)]
    handles[1].remove()
    layer(batch())
    assert order == [0, 2]


def test_hooks_receive_the_module_itself():
    layer = layers.Tanh()
    got = []
    layer.register_forward_hook(lambda m, i, o: got.append(m))
    layer.register_backward_hook(lambda m, gi, go: got.append(m))
    layer.backward(np.ones_like(layer(batch())))
    assert got == [layer, layer]
