"""The Module protocol: registries, modes, state_dict, astype, errors."""
import copy
import math
import re

import numpy as np
import pytest

import datasets
import layers
import nn


class Affine(nn.Module):
    """A tiny module with a parameter, a buffer, a child and a cache attribute."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.register_buffer("count", np.zeros(1, np.float32))
        self.inner = layers.Dense(3, 2)
        self.cache = np.arange(5.0)            # a cache: must never reach state_dict

    def forward(self, x):
        self._x = x
        return self.inner(x * self.scale.data)

    def backward(self, dy):
        dxs = self.inner.backward(dy)
        self.scale.grad += (dxs * self._x).sum(0)
        return dxs * self.scale.data


def test_registries_and_names():
    m = nn.Sequential(Affine(), layers.ReLU(), layers.Dense(2, 4))
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.scale", "0.inner.weight", "0.inner.bias", "2.weight", "2.bias"]
    assert list(m.state_dict()) == ["0.scale", "0.count"] + names[1:]   # PyTorch order
    assert len(m.parameters()) == 5 and len(m) == 3 and isinstance(m[1], layers.ReLU)


def test_caches_never_leak_into_state():
    m = Affine()
    m(np.ones((2, 3), np.float32))
    assert set(m.state_dict()) == {"scale", "count", "inner.weight", "inner.bias"}


def test_shared_parameter_listed_once():
    a = layers.Dense(3, 3)
    m = nn.Sequential(a, layers.Tanh(), a)
    assert len(m.parameters()) == 2


def test_a_module_called_twice_in_one_pass_refuses_backward():
    x = np.ones((2, 3), np.float32)
    d, head = layers.Dense(3, 3), layers.Dense(3, 2)
    model = nn.Sequential(d, layers.Tanh(), d, head)
    y = model(x)                                         # forward alone is fine
    with pytest.raises(ValueError, match="Dense ran 2 times in the last forward pass"):
        model.backward(np.ones_like(y))
    assert not head.weight.grad.any()                    # refused before any gradient was added
    with pytest.raises(ValueError, match="ran 2 times"):
        d.backward(np.ones((2, 3), np.float32))
    d(x)                                                 # a new pass with one call: backward works
    d.backward(np.ones((2, 3), np.float32))


def test_a_refused_input_leaves_the_count_of_calls_of_the_standing_forward():
    x = np.ones((2, 3), np.float32)
    d = layers.Dense(3, 3)
    model = nn.Sequential(d, layers.Tanh(), d)
    y = model(x)
    with pytest.raises(ValueError, match="expected input of shape"):
        model(np.ones((2, 4), np.float32))              # refused: the forward of y stands ...
    with pytest.raises(ValueError, match="Dense ran 2 times in the last forward pass"):
        model.backward(np.ones_like(y))                  # ... with d called twice in it
    d(x)
    with pytest.raises(ValueError, match="expected input of shape"):
        d(np.ones((2, 4), np.float32))                   # a refused call is no second use
    d.backward(np.ones((2, 3), np.float32))


def test_a_module_run_again_after_its_models_forward_refuses_the_models_backward():
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    d, head = layers.Dense(3, 3, rng=0), layers.Dense(3, 2, rng=1)
    a, b = nn.Sequential(d, layers.ReLU(), head), nn.Sequential(d, layers.Tanh())
    y = a(xa)
    for rerun in (lambda: b(xb), lambda: d(xb[:2])):     # in another model, or on its own
        rerun()
        with pytest.raises(ValueError, match="Dense, inside it, ran again after Sequential's last forward"):
            a.backward(np.ones_like(y))
        assert not head.weight.grad.any() and not d.weight.grad.any()   # nothing half-applied
    y = a(xa)                                            # its own forward again: backward works
    a.backward(np.ones_like(y))
    b(xb)
    b.backward(np.ones((5, 3), np.float32))              # the model that ran last works too


def test_weights_shared_through_one_parameter_get_both_gradients():
    x = np.random.default_rng(0).standard_normal((4, 3))
    a, b = layers.Dense(3, 3, dtype=np.float64), layers.Dense(3, 3, dtype=np.float64)
    b.weight, b.bias = a.weight, a.bias
    report = nn.gradcheck(nn.Sequential(a, layers.Tanh(), b), x)
    assert report.passed and [r.name for r in report.results][1:] == ["0.weight", "0.bias"]


def test_a_name_lives_in_one_registry():
    m = Affine()
    with pytest.raises(KeyError, match="'scale' is already a parameter"):
        m.register_buffer("scale", np.zeros(3))
    m.count = nn.Parameter(np.zeros(2))                  # assigning a Parameter replaces the buffer
    assert list(m.state_dict()) == ["scale", "count", "inner.weight", "inner.bias"]
    assert "count" not in m._buffers
    m.load_state_dict(m.state_dict())


def test_train_eval_recursive_and_returns_self():
    m = nn.Sequential(layers.Dense(2, 2), layers.Dropout(0.5))
    assert m.eval() is m and not m[1].training
    assert m.train() is m and m[1].training


def test_backward_before_forward_raises():
    with pytest.raises(ValueError, match="Dense.backward called before forward"):
        layers.Dense(3, 2).backward(np.zeros((1, 2), np.float32))


def test_backward_checks_dy_shape_and_dtype():
    d = layers.Dense(3, 2)
    d(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected dy of shape \(4, 2\).*got \(4, 3\)"):
        d.backward(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="expected dy of dtype float32"):
        d.backward(np.zeros((4, 2), np.float64))


def test_backward_adds_into_grad_and_zero_grad_clears():
    d = layers.Dense(3, 2)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    dy = np.ones((4, 2), np.float32)
    d(x)
    d.backward(dy)
    once = d.weight.grad.copy()
    d.backward(dy)
    np.testing.assert_allclose(d.weight.grad, 2 * once, rtol=1e-6)
    d.zero_grad()
    assert not d.weight.grad.any() and not d.bias.grad.any()


def test_replacing_a_child_or_parameter_keeps_its_place():
    x = np.random.default_rng(0).standard_normal((2, 2)).astype(np.float32)
    m = nn.Sequential(layers.Dense(2, 2), layers.ReLU(), layers.Dense(2, 2))
    m.add_module("1", layers.Tanh())
    assert list(m._modules) == ["0", "1", "2"]
    np.testing.assert_array_equal(m(x), m[2](np.tanh(m[0](x))))
    dense = layers.Dense(2, 3)
    dense.weight = nn.Parameter(np.zeros((3, 2), np.float32))
    assert list(dense.state_dict()) == ["weight", "bias"]
    assert [p.shape for p in dense.parameters()] == [(3, 2), (3,)]


@pytest.mark.parametrize("name, message", [
    ("training", "an attribute every Module has"), ("forward", "an attribute every Module has"),
    ("a.b", "without '.'"), ("", "non-empty name"), (3, "non-empty name")])
def test_registry_names_that_would_break_the_module_are_refused(name, message):
    m = Affine()
    with pytest.raises(KeyError, match=message):
        m.register_buffer(name, np.zeros(1))
    with pytest.raises(KeyError, match=message):
        m.add_module(name, layers.ReLU())
    with pytest.raises(KeyError, match=message):
        m.register_parameter(name, nn.Parameter(np.zeros(1)))
    assert m.training is True and list(m.state_dict()) == ["scale", "count", "inner.weight", "inner.bias"]


def test_a_buffer_is_a_numeric_array_or_none_and_none_stays_out_of_state():
    m = Affine()
    with pytest.raises(TypeError, match="expected buffer 'meta' to be a numeric numpy array or None, got object array"):
        m.register_buffer("meta", np.array(None))
    with pytest.raises(TypeError, match="expected buffer 'count' to be a numeric numpy array or None, got list"):
        m.count = [1.0]
    m.count = m.count[0] + 1                              # a NumPy scalar becomes a 0-d array
    assert isinstance(m.count, np.ndarray) and m.count.shape == ()
    m.register_buffer("meta", None)                      # as PyTorch: registered, not in state
    assert "meta" not in m.state_dict()
    m.load_state_dict(m.state_dict())


def test_load_state_dict_wants_a_mapping():
    with pytest.raises(TypeError, match="Dense.load_state_dict: expected a mapping of names to arrays, got list"):
        layers.Dense(2, 1).load_state_dict([np.zeros((1, 2))])


def test_load_state_dict_names_the_key_of_a_value_that_is_not_an_array():
    with pytest.raises(TypeError, match=r"Dense.load_state_dict: 'weight' expected a numpy array, got list"):
        layers.Dense(2, 1).load_state_dict({"weight": [[1.0, 2.0]], "bias": np.zeros(1, np.float32)})


def test_load_state_dict_names_the_key_of_a_tensor_numpy_cannot_hold():
    torch = pytest.importorskip("torch")
    model = nn.Sequential(layers.Dense(3, 2))
    before = model.state_dict()
    with pytest.raises(TypeError, match=r"'0.weight' expected a tensor NumPy can hold \(convert it first, "
                                        r"e.g. .float\(\)\), got one of dtype torch.bfloat16"):
        model.load_state_dict(torch.nn.Sequential(torch.nn.Linear(3, 2)).bfloat16().state_dict())
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())


def test_load_state_dict_round_trip_and_strict():
    a, b = Affine(), Affine()
    a.scale.data[:] = 3
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.scale.data, a.scale.data)
    state = a.state_dict()
    del state["count"]
    with pytest.raises(ValueError, match="missing keys \\['count'\\]"):
        b.load_state_dict(state)
    state = a.state_dict()
    state["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        b.load_state_dict(state)
    missing, unexpected = b.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == ["extra"]


def test_load_state_dict_wrong_shape_changes_nothing():
    a = nn.Sequential(layers.Dense(3, 2), layers.Dense(2, 2))
    before = a.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["1.weight"] = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"'1.weight' expected shape \(2, 2\), got \(2, 3\)"):
        a.load_state_dict(bad)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_refuses_values_its_dtype_cannot_hold():
    dense = layers.Dense(2, 2)
    state = {k: v.astype(np.float64) for k, v in dense.state_dict().items()}
    state["bias"][1] = -1e300
    before = {k: v.copy() for k, v in dense.state_dict().items()}
    with pytest.raises(ValueError, match=r"Dense.load_state_dict: 'bias' holds values beyond the range of "
                                         r"float32 \(up to 1e\+300\)"):
        dense.load_state_dict(state)
    assert all(np.array_equal(before[k], v) for k, v in dense.state_dict().items())


def test_astype_converts_params_and_buffers_in_place():
    m = Affine()
    p = m.scale
    assert m.astype(np.float64) is m
    assert m.scale is p and p.data.dtype == np.float64 and p.grad.dtype == np.float64
    assert m.count.dtype == np.float64 and m.dtype == np.float64
    for bad in (np.int32, np.float16):
        with pytest.raises(TypeError, match=f"Affine.astype: expected dtype float32 or float64, got {np.dtype(bad)}"):
            m.astype(bad)
    assert p.data.dtype == np.float64


@pytest.mark.parametrize("make", [
    lambda dtype: layers.Dense(2, 3, dtype=dtype), lambda dtype: layers.Conv2D(1, 2, 3, dtype=dtype),
    lambda dtype: layers.BatchNorm2D(2, dtype=dtype), lambda dtype: layers.LayerNorm(2, dtype=dtype),
    lambda dtype: layers.Embedding(4, 2, dtype=dtype), lambda dtype: layers.GRU(2, 3, dtype=dtype)])
def test_layers_compute_in_float32_or_float64_only(make):
    # The fast paths' kernels exist for these two; float16 is refused up front, not deep in numba.
    name = type(make(np.float32)).__name__
    with pytest.raises(TypeError, match=f"^{name}: expected dtype float32 or float64, got float16$"):
        make(np.float16)
    with pytest.raises(TypeError, match="MaxPool2D: expected input of dtype float32 or float64, got float16"):
        layers.MaxPool2D(2)(np.ones((1, 1, 4, 4), np.float16))


def test_sequential_slice_keeps_names_as_torch():
    model = nn.Sequential(layers.Dense(3, 4), layers.ReLU(), layers.Dense(4, 2))
    tail = model[1:]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]
    assert tail[1] is model[2] and len(tail) == 2
    tail.append(layers.ReLU())                       # the next free name, not a clash with "2"
    assert [name for name, _ in tail.named_modules()][1:] == ["1", "2", "3"]
    tail.add_module("head", layers.Dense(2, 2))
    tail.append(layers.ReLU())                       # named children other than numbers are skipped
    assert [name for name, _ in tail.named_modules()][1:] == ["1", "2", "3", "head", "4"]


def test_eval_mode_restores_every_module():
    model = nn.Sequential(layers.Dense(3, 4), layers.Dropout(0.5), layers.Dense(4, 2))
    model[1].eval()                                  # a submodule frozen in eval inside a training model
    x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    with nn.eval_mode(model):
        assert not any(m.training for m in model.modules())
    nn.evaluate(model, nn.CrossEntropyLoss(), (x, y))
    nn.summary(model, (3,), print_fn=None)
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_summary_lists_a_shared_module_once_per_call():
    d = layers.Dense(4, 4)
    text = nn.summary(nn.Sequential(d, layers.ReLU(), d), (4,), print_fn=None)
    assert text.count("Dense") == 2 and "Total params: 20" in text
    assert "Forward FLOPs per sample: 68" in text                 # 32 + 4 + 32, not 32 counted four times


class _ScaledDense(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.inner = layers.Dense(3, 3)

    def forward(self, x):
        return self.inner(x) * self.scale.data


def test_summary_rows_add_up_to_the_total_with_a_containers_own_parameters():
    text = nn.summary(nn.Sequential(_ScaledDense(), layers.ReLU()), (3,), print_fn=None)
    rows = [line.split() for line in text.splitlines() if "(None," in line]
    assert [r[1] for r in rows] == ["(Dense)", "(_ScaledDense)", "(ReLU)"]    # children first
    assert [int(r[-2]) for r in rows] == [12, 3, 0] and "Total params: 15" in text


class _Residual(nn.Module):
    """``x + f(x)``: no parameters of its own, one add per element."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(layers.Dense(3, 3), layers.Tanh())

    def forward(self, x):
        return x + self.f(x)

    def flops(self, input_shape, output_shape):
        return math.prod(output_shape)


def test_summary_counts_the_arithmetic_a_container_does_itself():
    text = nn.summary(nn.Sequential(_Residual(), layers.ReLU()), (3,), print_fn=None)
    rows = [line.split() for line in text.splitlines() if "(None," in line]
    assert [r[1] for r in rows] == ["(Dense)", "(Tanh)", "(_Residual)", "(ReLU)"]
    assert [int(r[-1]) for r in rows] == [18, 3, 3, 3] and "Forward FLOPs per sample: 27" in text


def test_seed_reproducible_init():
    nn.seed(123)
    a = layers.Dense(5, 4)
    nn.seed(123)
    b = layers.Dense(5, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    c = layers.Dense(5, 4, rng=np.random.default_rng(7))
    d = layers.Dense(5, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(c.bias.data, d.bias.data)


@pytest.mark.parametrize("make", [
    lambda rng: layers.Dense(3, 4, rng=rng), lambda rng: layers.Conv2D(2, 3, 2, rng=rng),
    lambda rng: layers.Conv1D(2, 3, 2, rng=rng), lambda rng: layers.LSTM(2, 3, rng=rng),
    lambda rng: layers.Embedding(5, 2, rng=rng)])
def test_int_seed_is_one_generator_for_the_whole_layer(make):
    # rng=7 means default_rng(7), drawn from in turn: the bias must not repeat the weight's draws.
    seeded, generated = make(7).state_dict(), make(np.random.default_rng(7)).state_dict()
    for key in seeded:
        np.testing.assert_array_equal(seeded[key], generated[key], err_msg=key)


def test_default_init_bounds_match_pytorch():
    d = layers.Dense(400, 300)
    bound = 1 / np.sqrt(400)
    assert np.abs(d.weight.data).max() <= bound and np.abs(d.weight.data).max() > 0.95 * bound
    assert d.weight.data.dtype == np.float32


def test_super_init_required():
    class Broken(nn.Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_deepcopy_is_independent():
    a = nn.Sequential(layers.Dense(2, 2))
    b = copy.deepcopy(a)
    b[0].weight.data += 1
    assert not np.array_equal(a[0].weight.data, b[0].weight.data)


def test_reference_switch_is_scoped():
    assert not nn.reference_enabled()
    with nn.use_reference():
        assert nn.reference_enabled()
        with nn.use_reference(False):
            assert not nn.reference_enabled()
        assert nn.reference_enabled()
    assert not nn.reference_enabled()


def test_parameter_data_is_a_writeable_contiguous_float_array():
    frozen = np.ones((2, 3), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="Parameter 'w': expected a writeable array"):
        nn.Parameter(frozen, name="w")
    p = nn.Parameter(np.ones((3, 2), np.float32).T, name="w")     # a strided view is copied
    assert p.data.flags.c_contiguous and p.data.flags.writeable
    before = p.data
    with pytest.raises(ValueError, match="read-only"):
        p.data = frozen
    with pytest.raises(TypeError, match="float"):
        p.data = np.ones((2, 3), np.int64)
    assert p.data is before


@pytest.mark.parametrize("make, name, shape", [
    (lambda: layers.LSTM(3, 4), "weight_hh_l0", (4, 16)),             # Keras's (H, 4H) layout
    (lambda: layers.LayerNorm(6), "weight", (1,)),
    (lambda: layers.Dense(3, 4), "bias", (1,)),
])
def test_a_parameter_keeps_the_shape_it_was_registered_with(make, name, shape):
    """The kernels size their loops by the layer's configuration: another shape would be read
    out of bounds or broadcast silently. PyTorch refuses it at forward too."""
    layer = make()
    x = np.ones((2, 5, 3) if isinstance(layer, layers.LSTM) else (2, 6 if name == "weight" else 3), np.float32)
    y = layer(x)
    registered = getattr(layer, name).shape
    getattr(layer, name).data = np.ones(shape, np.float32)
    message = (rf"\.{{}}: expected parameter '{name}' of shape {re.escape(str(registered))}, the shape it "
               rf"was registered with, got {re.escape(str(shape))}; a parameter keeps its shape")
    with pytest.raises(ValueError, match=message.format("backward")):
        layer.backward(np.ones_like(y))
    assert all(np.all(p.grad == 0) for p in layer.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match=message.format("forward")):
        layer(x)
    delattr(layer, name)                          # deleting does not forget the shape either
    setattr(layer, name, nn.Parameter(np.ones(shape, np.float32)))
    with pytest.raises(ValueError, match=message.format("forward")):
        layer(x)


def test_a_persistent_buffer_keeps_its_shape_a_non_persistent_one_may_change():
    bn = layers.BatchNorm1D(4).eval()
    bn.running_mean = np.zeros(1, np.float32)          # PyTorch: "running_mean should contain 4 elements"
    with pytest.raises(ValueError, match=r"BatchNorm1D.forward: expected buffer 'running_mean' of shape \(4,\)"):
        bn(np.ones((2, 4), np.float32))

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mask", np.ones(2, np.float32), persistent=False)

        def forward(self, x):
            self.mask = np.ones(x.shape[-1], np.float32)        # rebuilt for each length
            return x * self.mask

        def backward(self, dy):
            return dy * self.mask

    m = Masked()
    for T in (2, 3, 4):
        m(np.ones((1, T), np.float32))


def test_a_gradient_set_to_none_starts_again_from_zeros():
    x = np.ones((4, 3), np.float32)
    d = layers.Dense(3, 2, rng=0)
    y = d(x)
    d.weight.grad = d.bias.grad = None               # "no gradient", as in PyTorch
    d.backward(np.ones_like(y))
    np.testing.assert_allclose(d.weight.grad, np.full((2, 3), 4.0))
    np.testing.assert_allclose(d.bias.grad, np.full(2, 4.0))
    d.weight.grad = None
    d.zero_grad()
    assert d.weight.grad.shape == (2, 3) and not d.weight.grad.any()
    d.bias.grad = None
    d.astype(np.float64)
    assert d.bias.grad is None and d.weight.grad.dtype == np.float64


def test_a_refused_backward_leaves_no_gradient_as_none():
    gru = layers.GRU(3, 4)
    y = gru(np.ones((2, 5, 3), np.float32))
    gru.zero_grad(set_to_none=True)
    with pytest.raises(TypeError, match="GRU.backward: expected dstate h of dtype float32"):
        gru.backward(np.ones_like(y), dstate=np.zeros((1, 2, 4)))          # float64
    assert all(p.grad is None for p in gru.parameters())


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Dense(2, 2, bias="no"), "Dense: expected bias to be True or False, got 'no'"),
    (lambda: layers.Conv2D(1, 1, 3, bias=0), "Conv2D: expected bias to be True or False, got 0"),
    (lambda: layers.LSTM(2, 2, bidirectional="False"), "LSTM: expected bidirectional to be True or False"),
    (lambda: layers.GRU(2, 2, return_sequences=None), "GRU: expected return_sequences to be True or False"),
    (lambda: layers.RNN(2, 2, stateful=1), "RNN: expected stateful to be True or False, got 1"),
    (lambda: layers.MaxPool2D(2, ceil_mode="yes"), "MaxPool2D: expected ceil_mode to be True or False"),
    (lambda: layers.AvgPool1D(2, count_include_pad=[]), "AvgPool1D: expected count_include_pad"),
    (lambda: layers.BatchNorm2D(2, affine="no"), "BatchNorm2D: expected affine to be True or False"),
    (lambda: layers.BatchNorm1D(2, track_running_stats=0), "BatchNorm1D: expected track_running_stats"),
    (lambda: layers.LayerNorm(2, elementwise_affine="no"), "LayerNorm: expected elementwise_affine"),
    (lambda: layers.Tanh().train("False"), "Tanh.train: expected mode to be True or False, got 'False'"),
    (lambda: layers.Tanh().record_intermediates(1), "Tanh.record_intermediates: expected mode"),
    (lambda: datasets.DataLoader(np.zeros(3), np.zeros(3), 2, shuffle="no"), "DataLoader: expected shuffle"),
    (lambda: datasets.DataLoader(np.zeros(3), np.zeros(3), 2, drop_last=1), "DataLoader: expected drop_last"),
])
def test_a_flag_must_be_true_or_false(make, message):
    with pytest.raises(TypeError, match=message):
        make()
    layers.Dense(2, 2, bias=np.bool_(False))          # NumPy's bools are bools


def test_children_and_named_buffers():
    bn, inner = layers.BatchNorm1D(2), nn.Sequential(layers.Dense(2, 2), layers.BatchNorm1D(2))
    model = nn.Sequential(bn, inner)
    assert model.children() == [bn, inner]
    names = [name for name, _ in model.named_buffers()]
    assert names == ["0.running_mean", "0.running_var", "0.num_batches_tracked",
                     "1.1.running_mean", "1.1.running_var", "1.1.num_batches_tracked"]
    assert all(k in model.state_dict() for k in names)


def test_modules_run_on_worker_threads_inside_a_forward_are_part_of_it():
    from concurrent.futures import ThreadPoolExecutor

    class Ensemble(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = layers.Dense(4, 2, rng=0), layers.Dense(4, 2, rng=1)

        def forward(self, x):
            with ThreadPoolExecutor(2) as pool:
                ya, yb = pool.submit(self.a, x), pool.submit(self.b, x)
                return ya.result() + yb.result()

        def backward(self, dy):
            return self.a.backward(dy) + self.b.backward(dy)

    model, x = Ensemble(), np.ones((5, 4), np.float32)
    y = model(x)
    dx = model.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, np.ones((5, 2)) @ (model.a.weight.data + model.b.weight.data), rtol=1e-6)


def test_a_copy_taken_while_a_module_runs_is_not_running():
    import threading
    model, snapshots = nn.Sequential(layers.Dense(4, 2)), []
    model[0].register_forward_hook(lambda m, inputs, out: snapshots.append(copy.deepcopy(model)))
    x = np.ones((5, 4), np.float32)
    model(x)
    twin, outputs = snapshots[0], []
    worker = threading.Thread(target=lambda: outputs.append(twin(x)))
    worker.start()
    worker.join()
    assert outputs[0].shape == (5, 2)
    calls = []
    twin.register_forward_hook(lambda *args: calls.append(1))
    y = twin(x)                                          # on this thread too, hooks and all
    assert calls == [1] and twin.backward(np.ones_like(y)).shape == (5, 4)


def test_a_container_whose_later_child_refused_its_input_refuses_backward():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = layers.Dense(3, 3), layers.Dense(3, 2)

        def forward(self, x, width=3):
            return self.second(self.first(x)[:, :width])

        def backward(self, dy):
            raise AssertionError("unreachable")

    model, x = Pair(), np.ones((2, 3), np.float32)
    model(x)
    with pytest.raises(ValueError, match="Dense: expected input of shape"):
        model(x, width=2)                                # first ran on x, second refused
    with pytest.raises(ValueError, match="Pair.backward called before forward .or after a forward that failed"):
        model.backward(np.ones((2, 2), np.float32))


def test_backward_of_none_is_refused_except_by_recurrent_layers():
    for module in (layers.Dense(2, 2), layers.ReLU(), nn.Sequential(layers.Dense(2, 2)), layers.Dropout(0.5).eval()):
        module(np.ones((1, 2), np.float32))
        with pytest.raises(TypeError, match=rf"^{type(module).__name__}.backward: expected dy to be a numpy array, got None"):
            module.backward(None)
    gru = layers.GRU(2, 3)
    gru(np.ones((1, 4, 2), np.float32))
    assert gru.backward(None, dstate=np.ones((1, 1, 3), np.float32)).shape == (1, 4, 2)


def test_astype_between_forward_and_backward_asks_for_a_new_forward():
    model = nn.Sequential(layers.Dense(2, 3), layers.Tanh(), layers.Dense(3, 1))
    y = model(np.ones((2, 2), np.float32))
    model.astype(np.float64)
    with pytest.raises(ValueError, match="backward called before forward .*or after astype"):
        model.backward(np.ones_like(y, dtype=np.float64))
    assert all(not p.grad.any() for p in model.parameters())


def test_add_module_and_register_buffer_do_not_replace_what_is_there():
    dense, bn = layers.Dense(2, 2), layers.BatchNorm1D(3)
    with pytest.raises(KeyError, match=r"Dense.add_module: 'bias' is already a parameter of this Dense"):
        dense.add_module("bias", layers.ReLU())
    with pytest.raises(KeyError, match=r"BatchNorm1D.register_buffer: 'num_features' is already an attribute"):
        bn.register_buffer("num_features", np.zeros(1))
    with pytest.raises(KeyError, match=r"'running_mean' is already a buffer"):
        bn.add_module("running_mean", layers.ReLU())
    assert dense.bias is not None and bn.num_features == 3
    bn.register_buffer("running_mean", np.ones(3, np.float32))           # a buffer may be replaced
    seq = nn.Sequential(layers.ReLU())
    seq.add_module("0", layers.Tanh())                                    # and a child
    assert isinstance(seq[0], layers.Tanh)
    with pytest.raises(KeyError, match=r"Dense.register_parameter: 'in_features' is already an attribute"):
        dense.register_parameter("in_features", nn.Parameter(np.zeros(1)))
    with pytest.raises(TypeError, match="Dense.register_parameter: expected a Parameter, got ndarray"):
        dense.register_parameter("scale", np.zeros(1))


def test_register_parameter_names_a_parameter_built_at_run_time():
    dense = layers.Dense(2, 2)
    weight = nn.Parameter(np.ones((2, 2), np.float32))
    dense.register_parameter("weight", weight)                          # a parameter may be replaced
    for k in range(2):
        dense.register_parameter(f"scale_l{k}", nn.Parameter(np.full(2, k, np.float32)))
    assert dense.weight is weight
    assert list(dense.state_dict()) == ["weight", "bias", "scale_l0", "scale_l1"]
    assert dense.scale_l1.name == "scale_l1" and dense.scale_l1.data[0] == 1


def test_hooks_must_be_callable_and_have_distinct_keys():
    dense = layers.Dense(2, 2)
    with pytest.raises(TypeError, match="Dense.register_forward_hook: expected a callable hook, got int"):
        dense.register_forward_hook(5)
    with pytest.raises(TypeError, match="Dense.register_backward_hook: expected a callable hook, got NoneType"):
        dense.register_backward_hook(None)
    a, b = dense.register_forward_hook(print), dense.register_forward_hook(print)
    assert a.id != b.id and len(dense._forward_hooks) == 2


def test_load_state_dict_wants_a_strict_flag_and_numbers():
    dense = layers.Dense(2, 1)
    state = dense.state_dict()
    with pytest.raises(TypeError, match="Dense.load_state_dict: expected strict to be True or False, got 'no'"):
        dense.load_state_dict(state, strict="no")
    bn = layers.BatchNorm1D(2)
    with pytest.raises(TypeError, match=r"'num_batches_tracked' expected dtype like int64, got <U1"):
        bn.load_state_dict({**bn.state_dict(), "num_batches_tracked": np.array("7")})


def test_sequential_index_out_of_range_names_the_length():
    with pytest.raises(IndexError, match="Sequential: index 5 is out of range for 2 modules"):
        nn.Sequential(layers.ReLU(), layers.Tanh())[5]
    with pytest.raises(TypeError, match="expected an integer index or a slice, got '1'"):
        nn.Sequential(layers.ReLU())["1"]
    with pytest.raises(TypeError, match=r"Sequential: expected an integer index to assign one module, got "
                                        r"slice\(0, 1, None\) \(for a range, del it and insert"):
        nn.Sequential(layers.ReLU())[0:1] = layers.Tanh()


def _edit_like_a_list(model, dense, activation, before_last=-1):
    model.insert(1, activation())
    model.insert(before_last, dense(4, 4))
    del model[0]
    model.append(activation())
    model[0] = activation()
    model.extend([dense(2, 3)])
    del model[1:2]
    popped = model.pop(0)
    return model, popped


def test_sequential_edits_like_a_list_with_torchs_names():
    torch = pytest.importorskip("torch")
    model, popped = _edit_like_a_list(nn.Sequential(layers.Dense(3, 4), layers.Dense(4, 2)),
                                      layers.Dense, layers.Tanh)
    reference, _ = _edit_like_a_list(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)),
                                     torch.nn.Linear, torch.nn.Tanh)
    assert isinstance(popped, layers.Tanh)
    assert [type(m).__name__ for m in model] == ["Dense", "Tanh", "Dense"]
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()}
    model.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model(x), reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edit", [lambda m: m.__delitem__(1), lambda m: m.__setitem__(1, layers.ReLU()),
                                  lambda m: m.insert(0, layers.Tanh())])
def test_a_sequential_edited_after_forward_refuses_backward_before_any_gradient(edit):
    model = nn.Sequential(layers.Dense(3, 3), layers.Tanh(), layers.Dense(3, 3))
    y = model(np.ones((2, 3), np.float32))
    edit(model)
    with pytest.raises(ValueError, match="Sequential.backward: its modules were changed after its forward"):
        model.backward(np.ones_like(y))
    assert not any(p.grad.any() for p in model.parameters())


def test_a_child_converted_after_forward_refuses_the_parents_backward_before_any_gradient():
    model = nn.Sequential(layers.Dense(3, 3), nn.Sequential(layers.Tanh(), layers.Dense(3, 2)))
    y = model(np.ones((2, 3), np.float32))
    model[1][1].astype(np.float64)
    with pytest.raises(ValueError, match="Sequential.backward: Dense, inside it, was converted with astype"):
        model.backward(np.ones_like(y))
    assert not any(p.grad.any() for p in model.parameters())


class _SquareMixin:
    """forward and backward from a class that is not a Module."""

    def forward(self, x):
        self._x = x
        return x * x

    def backward(self, dy):
        return 2 * self._x * dy


class _Square(_SquareMixin, nn.Module):
    pass


def test_forward_and_backward_from_a_mixin_get_the_protocols_checks():
    with pytest.raises(ValueError, match="_Square.backward called before forward"):
        _Square().backward(np.ones(1))
    square = _Square()
    model = nn.Sequential(square, square)
    model(np.array([2.0]))
    with pytest.raises(ValueError, match="_Square ran 2 times in the last forward pass"):
        model.backward(np.ones(1))


class _Twice(layers.Dense):
    """Sums the layer over two halves of its input: the second super().forward overwrites the
    cache of the first."""

    def forward(self, x):
        return super().forward(x[:, :3]) + super().forward(x[:, 3:])


class _Scaled(layers.Dense):
    def forward(self, x):
        return 2 * super().forward(x)


class _ScaledAgain(_Scaled):
    def forward(self, x):
        return super().forward(x) + 1           # one call of each class's forward: fine

    def backward(self, dy):
        return super().backward(2 * dy)


def test_the_same_super_forward_twice_in_one_call_refuses_backward():
    twice = _Twice(3, 2)
    y = twice(np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match="_Twice.backward: _Twice ran 2 times in the last forward pass"):
        twice.backward(np.ones_like(y))
    chained = _ScaledAgain(3, 2)
    y = chained(np.ones((4, 3), np.float32))
    chained.backward(np.ones_like(y))
    np.testing.assert_allclose(chained.bias.grad, [8.0, 8.0])     # y = 2 z + 1: dz = 2 dy, over 4 rows


def test_a_module_without_module_init_is_named():
    class NoInit(nn.Module):
        def __init__(self):
            pass

        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"NoInit: Module.__init__ was never called; call super\(\).__init__\(\)"):
        NoInit()(np.ones(2))
    with pytest.raises(TypeError, match="NoInit: Module.__init__ was never called"):
        nn.Sequential(NoInit())
    for read in (lambda m: m.parameters(), lambda m: m.state_dict(), lambda m: m.train()):
        with pytest.raises(AttributeError, match="Module.__init__ was never called; call super"):
            read(NoInit())
    assert copy.deepcopy(NoInit()) is not None          # copy's probes of dunders still say "absent"


def test_a_copy_of_a_sequential_taken_between_forward_and_backward_runs_backward():
    model = nn.Sequential(layers.Dense(3, 4), layers.Tanh(), layers.Dense(4, 2))
    y = model(np.ones((5, 3), np.float32))
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.backward(np.ones_like(y)), model.backward(np.ones_like(y)))
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_use_reference_takes_a_flag_and_a_grad_must_be_writable():
    with pytest.raises(TypeError, match="use_reference: expected enabled to be True or False, got 'no'"):
        with nn.use_reference("no"):
            pass
    p = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="expected a writable grad"):
        p.grad = np.broadcast_to(np.ones(1), (2,))


def test_sequential_edits_check_everything_first():
    model = nn.Sequential(layers.ReLU(), layers.Tanh())
    with pytest.raises(TypeError, match="expected Module instances, got int"):
        model.extend([layers.Sigmoid(), 3])
    with pytest.raises(IndexError, match=r"Sequential.insert: expected an index in \[-2, 2\], got 3"):
        model.insert(3, layers.Sigmoid())
    with pytest.raises(IndexError, match="index -3 is out of range for 2 modules"):
        del model[-3]
    with pytest.raises(TypeError, match="expected Module instances, got ufunc"):
        model[0] = np.tanh
    assert [type(m).__name__ for m in model] == ["ReLU", "Tanh"]


def test_a_shared_module_is_one_module_but_keyed_under_each_name():
    torch = pytest.importorskip("torch")
    d = layers.Dense(3, 3)
    model = nn.Sequential(d, layers.Tanh(), d)
    assert [name for name, _ in model.named_modules()] == ["", "0", "1"]
    linear = torch.nn.Linear(3, 3)
    reference = torch.nn.Sequential(linear, torch.nn.Tanh(), linear)
    assert [name for name, _ in reference.named_modules()] == ["", "0", "1"]
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict())
    np.testing.assert_array_equal(d.weight.data, linear.weight.detach().numpy())


def test_a_parameters_grad_keeps_its_datas_shape_and_dtype():
    p = nn.Parameter(np.ones((4, 3), np.float32), name="weight")
    with pytest.raises(ValueError, match=r"Parameter 'weight': expected grad of the data's shape \(4, 3\) "
                                         r"and dtype float32, got \(4, 3\) float64"):
        p.grad = np.zeros((4, 3))
    with pytest.raises(TypeError, match="Parameter 'weight': expected grad to be a numpy array or None, got list"):
        p.grad = [[0.0] * 3] * 4
    p.grad += 2.0                                          # in place, as backward adds
    p.astype(np.float64)                                   # the gradient converts with the value
    assert p.grad.dtype == np.float64 and p.grad[0, 0] == 2.0
    p.data = np.zeros((2, 2))                              # another shape: the old gradient is gone
    assert p.grad is None
    p.zero_grad()
    assert p.grad.shape == (2, 2)


class ResidualStack(nn.Module):
    """``h <- h + tanh(block(h))`` for each block of a ModuleList, then a head."""

    def __init__(self, width, depth):
        super().__init__()
        self.blocks = nn.ModuleList(layers.Dense(width, width, dtype=np.float64) for _ in range(depth))
        self.tanhs = nn.ModuleList([layers.Tanh() for _ in range(depth)])
        self.head = layers.Dense(width, 2, dtype=np.float64)

    def forward(self, x):
        for block, tanh in zip(self.blocks, self.tanhs):
            x = x + tanh(block(x))
        return self.head(x)

    def backward(self, dy):
        dh = self.head.backward(dy)
        for block, tanh in zip(reversed(self.blocks), reversed(self.tanhs)):
            dh = dh + block.backward(tanh.backward(dh))
        return dh


def test_a_module_list_registers_its_modules_with_torchs_names():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = ResidualStack(3, 2)

    class TorchStack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(3, 3) for _ in range(2))
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            for block in self.blocks:
                x = x + torch.tanh(block(x))
            return self.head(x)

    reference = TorchStack().double()
    assert list(model.state_dict()) == list(reference.state_dict())   # blocks.0.weight, ...
    _assert_equals_torch(model, reference, in_features=3, out_features=2)


def _assert_equals_torch(model, reference, in_features, out_features):
    """Same weights, then the same output, dx and every parameter gradient (by name)."""
    torch = pytest.importorskip("torch")
    model.load_state_dict(reference.state_dict())
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((5, in_features)), rng.standard_normal((5, out_features))
    xt = torch.from_numpy(x).requires_grad_()
    y = reference(xt)
    y.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(model(x), y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.backward(dy), xt.grad.numpy(), rtol=1e-12)
    torch_grads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, torch_grads[name].grad.numpy(), rtol=1e-12, err_msg=name)
    assert nn.gradcheck(model, x).passed


def test_a_module_list_edits_like_torchs_and_runs_nothing_itself():
    torch = pytest.importorskip("torch")
    # (torch's ModuleList.insert takes no negative index: 2 is before the last of three)
    blocks, popped = _edit_like_a_list(nn.ModuleList([layers.Dense(3, 4), layers.Dense(4, 2)]),
                                       layers.Dense, layers.Tanh, before_last=2)
    reference, _ = _edit_like_a_list(torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)]),
                                     torch.nn.Linear, torch.nn.Tanh, before_last=2)
    assert isinstance(popped, layers.Tanh)
    assert [type(m).__name__ for m in blocks] == ["Dense", "Tanh", "Dense"]
    assert {k: v.shape for k, v in blocks.state_dict().items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(blocks[1:].state_dict()) == list(reference[1:].state_dict()) == ["1.weight", "1.bias"]
    for run in (lambda x: blocks(x), lambda dy: blocks.backward(dy)):
        with pytest.raises(NotImplementedError, match="ModuleList holds modules but runs none of them"):
            run(np.ones((1, 3), np.float32))
    assert len(nn.ModuleList()) == len(nn.ModuleList(None)) == 0
    assert not isinstance(nn.Sequential(), nn.ModuleList)          # as in PyTorch
    with pytest.raises(TypeError, match="ModuleList: expected Module instances, got int"):
        blocks.extend([layers.ReLU(), 3])
    assert len(blocks) == 3                                # nothing of the refused extend was added
    with pytest.raises(IndexError, match=r"ModuleList.insert: expected an index in \[-3, 3\], got 7"):
        blocks.insert(7, layers.ReLU())


def test_adding_module_lists_and_sequentials_joins_the_same_modules_as_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = [layers.Dense(3, 4), layers.Tanh()], [torch.nn.Linear(3, 4), torch.nn.Tanh()]
    tail, torch_tail = layers.Dense(4, 2), torch.nn.Linear(4, 2)
    for kind, torch_kind in ((nn.ModuleList, torch.nn.ModuleList), (nn.Sequential, torch.nn.Sequential)):
        make = (lambda ms: kind(ms)) if kind is nn.ModuleList else (lambda ms: kind(*ms))
        make_torch = (lambda ms: torch_kind(ms)) if kind is nn.ModuleList else (lambda ms: torch_kind(*ms))
        head = make(ours)
        joined, reference = head + make([tail]), make_torch(theirs) + make_torch([torch_tail])
        assert type(joined) is kind and list(head) == ours          # a new container; head unchanged
        assert all(a is b for a, b in zip(joined, ours + [tail]))   # the same module objects
        assert list(joined.state_dict()) == list(reference.state_dict())
        head += make([tail])
        assert list(head.state_dict()) == list(reference.state_dict())
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal((nn.Sequential(*ours) + [tail])(x), tail(ours[1](ours[0](x))))
    for other in (layers.Dense(2, 2), 3):
        with pytest.raises(TypeError, match=f"ModuleList \\+: expected a ModuleList, a Sequential or a list "
                                            f"of modules, got {type(other).__name__}"):
            nn.ModuleList(ours) + other


def test_a_module_dict_registers_its_modules_with_torchs_names():
    torch = pytest.importorskip("torch")

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = layers.Dense(3, 4, dtype=np.float64)
            self.tanh = layers.Tanh()
            self.heads = nn.ModuleDict({"digit": layers.Dense(4, 10, dtype=np.float64),
                                        "parity": layers.Dense(4, 2, dtype=np.float64)})

        def forward(self, x):
            h = self.tanh(self.trunk(x))
            return self.heads["digit"](h) + self.heads["parity"](h).sum(axis=1, keepdims=True)

        def backward(self, dy):
            dh = self.heads["digit"].backward(dy)
            dh = dh + self.heads["parity"].backward(np.repeat(dy.sum(axis=1, keepdims=True), 2, axis=1))
            return self.trunk.backward(self.tanh.backward(dh))

    class TorchHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Linear(3, 4)
            self.heads = torch.nn.ModuleDict({"digit": torch.nn.Linear(4, 10),
                                              "parity": torch.nn.Linear(4, 2)})

        def forward(self, x):
            h = torch.tanh(self.trunk(x))
            return self.heads["digit"](h) + self.heads["parity"](h).sum(dim=1, keepdim=True)

    model, reference = Heads(), TorchHeads().double()
    assert list(model.state_dict()) == list(reference.state_dict())   # heads.digit.weight, ...
    _assert_equals_torch(model, reference, in_features=3, out_features=10)


def test_a_module_dict_edits_like_a_dict_and_checks_before_it_adds():
    heads = nn.ModuleDict([("b", layers.Dense(2, 2)), ("a", layers.ReLU())])
    heads["c"] = layers.Tanh()
    heads["b"] = layers.Dense(2, 3)                        # replacing keeps the key's place
    assert list(heads) == list(heads.keys()) == ["b", "a", "c"]
    assert list(heads.state_dict()) == ["b.weight", "b.bias"] and heads["b"].weight.shape == (3, 2)
    assert "a" in heads and "z" not in heads and len(heads) == 3
    assert [type(m).__name__ for m in heads.values()] == ["Dense", "ReLU", "Tanh"]
    assert isinstance(heads.pop("a"), layers.ReLU) and list(heads) == ["b", "c"]
    del heads["c"]
    with pytest.raises(KeyError, match=r"ModuleDict has no module 'c'; its keys are \['b'\]"):
        heads["c"]
    with pytest.raises(KeyError, match="ModuleDict: 'keys' is already an attribute of this ModuleDict"):
        heads["keys"] = layers.ReLU()
    with pytest.raises(KeyError, match="ModuleDict: 'training' is an attribute every Module has"):
        heads.update({"training": layers.ReLU()})
    with pytest.raises(KeyError, match="without '.'"):
        heads["a.b"] = layers.ReLU()
    with pytest.raises(TypeError, match="ModuleDict: expected a Module for key 'x', got int"):
        heads.update([("y", layers.ReLU()), ("x", 3)])
    with pytest.raises(TypeError, match=r"expected a mapping or \(key, module\) pairs, got 'xy' at position 0"):
        nn.ModuleDict(["xy"])
    assert list(heads) == ["b"]                             # nothing of a refused update was added
    for run in (lambda x: heads(x), lambda dy: heads.backward(dy)):
        with pytest.raises(NotImplementedError, match="ModuleDict holds modules but runs none of them"):
            run(np.ones((1, 2), np.float32))
    heads.clear()
    assert len(heads) == 0 and heads.state_dict() == {} and len(nn.ModuleDict()) == 0


def test_a_non_persistent_buffer_follows_astype_but_stays_out_of_state_as_torchs():
    torch = pytest.importorskip("torch")
    m, reference = layers.Dense(3, 2), torch.nn.Linear(3, 2)
    m.register_buffer("mask", np.tril(np.ones((3, 3), np.float32)), persistent=False)
    reference.register_buffer("mask", torch.ones(3, 3), persistent=False)
    assert list(m.state_dict()) == list(reference.state_dict()) == ["weight", "bias"]
    assert m.load_state_dict(reference.state_dict()) == ([], [])
    assert m.astype(np.float64).mask.dtype == np.float64 and [n for n, _ in m.named_buffers()] == ["mask"]
    m.register_buffer("mask", np.ones(3), persistent=True)         # registered again: it persists
    assert list(m.state_dict()) == ["weight", "bias", "mask"]
    m.register_buffer("scratch", np.ones(3), persistent=False)
    del m.scratch
    m.register_buffer("scratch", np.ones(3))
    assert "scratch" in m.state_dict()
    with pytest.raises(TypeError, match="Dense.register_buffer: expected persistent to be True or False, got .no."):
        m.register_buffer("other", np.ones(3), persistent="no")


def test_load_state_dict_names_what_it_left_out():
    model = nn.Sequential(layers.Dense(3, 2))
    result = model.load_state_dict({"0.weight": np.zeros((2, 3)), "extra": np.ones(1)}, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["extra"]
    missing, unexpected = result
    assert (missing, unexpected) == (["0.bias"], ["extra"])


def test_apply_children_and_buffers_as_torchs():
    torch = pytest.importorskip("torch")
    model = nn.Sequential(layers.Dense(3, 4), nn.Sequential(layers.BatchNorm1D(4), layers.ReLU()))
    reference = torch.nn.Sequential(torch.nn.Linear(3, 4),
                                    torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.ReLU()))
    order, torch_order = [], []
    assert model.apply(lambda m: order.append(type(m).__name__)) is model
    reference.apply(lambda m: torch_order.append(type(m).__name__))
    assert order == ["Dense", "BatchNorm1D", "ReLU", "Sequential", "Sequential"]
    assert [name.lower() for name in order] == [name.lower().replace("linear", "dense")
                                                 for name in torch_order]
    assert [n for n, _ in model.named_children()] == [n for n, _ in reference.named_children()]
    assert [b.shape for b in model.buffers()] == [tuple(b.shape) for b in reference.buffers()]


def test_a_module_dict_takes_another_and_register_parameter_takes_none_as_torchs():
    torch = pytest.importorskip("torch")
    heads = nn.ModuleDict({"x": layers.ReLU()})
    torch_heads = torch.nn.ModuleDict({"x": torch.nn.ReLU()})
    assert list(nn.ModuleDict(heads)) == list(torch.nn.ModuleDict(torch_heads)) == ["x"]
    heads.update(nn.ModuleDict({"y": layers.Tanh()}))
    assert list(heads) == ["x", "y"]
    dense, linear = layers.Dense(2, 2), torch.nn.Linear(2, 2)
    dense.register_parameter("bias", None)
    linear.register_parameter("bias", None)
    assert dense.bias is None and list(dense.state_dict()) == list(linear.state_dict()) == ["weight"]
    y = dense(np.ones((1, 2), np.float32))
    np.testing.assert_allclose(y, np.ones((1, 2), np.float32) @ dense.weight.data.T)


def test_apply_children_and_buffers_count_a_shared_child_once_and_skip_none_as_torchs():
    torch = pytest.importorskip("torch")
    d, t = layers.Dense(2, 2), torch.nn.Linear(2, 2)
    model, reference = nn.Sequential(d, d), torch.nn.Sequential(t, t)
    calls, torch_calls = [], []
    model.apply(lambda m: calls.append(type(m).__name__))
    reference.apply(lambda m: torch_calls.append(type(m).__name__))
    assert calls == ["Dense", "Sequential"] and len(torch_calls) == 2
    assert [n for n, _ in model.named_children()] == [n for n, _ in reference.named_children()] == ["0"]
    bn, torch_bn = layers.BatchNorm1D(2), torch.nn.BatchNorm1d(2)
    bn.register_buffer("extra", None)
    torch_bn.register_buffer("extra", None)
    assert [n for n, _ in bn.named_buffers()] == [n for n, _ in torch_bn.named_buffers()]
    assert len(bn.buffers()) == len(list(torch_bn.buffers())) == 3


def test_a_module_pickled_without_newer_bookkeeping_still_works():
    import pickle
    model = nn.Sequential(layers.Dense(2, 2), layers.BatchNorm1D(2))
    blob = pickle.dumps(model)
    old = pickle.loads(blob)
    for m in old.modules():                             # as pickled before the attribute existed
        del m.__dict__["_non_persistent"]
    again = pickle.loads(pickle.dumps(old))
    assert list(again.state_dict()) == list(model.state_dict())
    again[0].weight = nn.Parameter(np.zeros((2, 2), np.float32))
    assert not again[0].weight.data.any()


class _TiedHead(nn.Module):
    """Embedding, then logits against the same table: the output projection adds into the
    embedding's weight before the embedding's own backward runs."""

    def __init__(self):
        super().__init__()
        self.emb = layers.Embedding(5, 3, rng=0)

    def forward(self, ids):
        self._h = self.emb(ids)
        return self._h @ self.emb.weight.data.T

    def backward(self, dy):
        self.emb.weight.grad += np.einsum("nv,nd->vd", dy, self._h)
        return self.emb.backward(dy @ self.emb.weight.data)


def test_adding_into_a_childs_unset_gradient_names_the_parameter():
    model = _TiedHead()
    y = model(np.array([0, 3]))
    model.zero_grad(set_to_none=True)
    with pytest.raises(TypeError, match=r"_TiedHead.backward: .*NoneType.*: the gradient of emb.weight "
                                        r"was None \(zero_grad\(set_to_none=True\)\)"):
        model.backward(np.ones_like(y))
    model.zero_grad()
    y = model(np.array([0, 3]))
    model.backward(np.ones_like(y))                      # started: the tie adds as it should
    assert model.emb.weight.grad[[0, 3]].any() and model.emb.weight.grad[[1, 2, 4]].any()


class _ForgotCache(layers.ReLU):
    def backward(self, dy):
        self._total += dy                                  # a cache forward never set: None
        return dy


def test_another_none_error_in_a_backward_is_left_as_it_was_raised():
    model = nn.Sequential(nn.Sequential(layers.Dense(3, 4), _ForgotCache()), layers.Dense(4, 2))
    y = model(np.ones((2, 3), np.float32))
    model._modules["0"]._modules["1"]._total = None
    model.zero_grad(set_to_none=True)                     # the first Dense has not started its own
    with pytest.raises(TypeError, match=r"^unsupported operand type\(s\) for \+=?: 'NoneType' and '\w+'$"):
        model.backward(np.ones_like(y))
