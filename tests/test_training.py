"""fit / evaluate / summary, and the README's digits example end to end."""
import copy

import numpy as np
import pytest

import datasets
import layers
import nn
import optim


def test_fit_history_on_digits():
    nn.seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    model = nn.Sequential(layers.Flatten(), layers.Dense(64, 32), layers.ReLU(), layers.Dense(32, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    train = datasets.DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=0)
    history = nn.fit(model, loss_fn, opt, train, epochs=3, val_data=(x_test, y_test), progress=False)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert all(len(v) == 3 for v in history.values())
    assert history["loss"][-1] < history["loss"][0] and history["accuracy"][-1] > 0.8
    result = nn.evaluate(model, loss_fn, (x_test, y_test))
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_evaluate_restores_mode_and_accepts_batches():
    model = nn.Sequential(layers.Dense(3, 2), layers.Dropout(0.5))
    x = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    y = np.array([0, 1] * 5)
    a = nn.evaluate(model, nn.CrossEntropyLoss(), (x, y), batch_size=3)
    assert model.training
    b = nn.evaluate(model, nn.CrossEntropyLoss(), [(x[:4], y[:4]), (x[4:], y[4:])])
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["accuracy"] == b["accuracy"]


def test_fit_regression_and_hooks_into_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    y = (x @ np.array([[2.0], [-1.0]], np.float32) + 0.5).astype(np.float32)
    model = layers.Dense(2, 1)
    calls = []
    h = nn.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=40,
               batch_size=16, before_step=lambda: calls.append(1), progress=False)
    assert h["accuracy"][0] is None and h["loss"][-1] < 1e-4 and len(calls) == 40 * 4
    np.testing.assert_allclose(model.weight.data, [[2.0, -1.0]], atol=1e-2)


def test_summary_shapes_params_flops():
    model = nn.Sequential(layers.Flatten(), layers.Dense(64, 32), layers.ReLU(), layers.Dense(32, 10))
    text = nn.summary(model, (1, 8, 8), print_fn=None)
    assert "(None, 64)" in text and "(None, 32)" in text and "(None, 10)" in text
    assert "Total params: 2,410" in text
    assert f"{2 * 64 * 32:,}" in text and f"Forward FLOPs per sample: {2 * 64 * 32 + 32 + 2 * 32 * 10:,}" in text
    assert model.training and "shared" not in text
    with pytest.raises(TypeError, match="summary: expected dtype to be a NumPy dtype, got 'bogus'"):
        nn.summary(model, (1, 8, 8), dtype="bogus")
    with pytest.raises(TypeError, match="summary: expected print_fn to be callable or None, got int"):
        nn.summary(model, (1, 8, 8), print_fn=5)


def test_summary_counts_a_tied_weight_once():
    model = nn.Sequential(layers.Dense(4, 4), layers.Tanh(), layers.Dense(4, 4))
    model[2].weight = model[0].weight
    model[0].alias = model[0].bias                               # one parameter, two names
    text = nn.summary(model, (4,), print_fn=None)
    rows = [line.split() for line in text.splitlines() if line.startswith(("0 ", "2 "))]
    assert [row[-2] for row in rows] == ["20", "4"]               # the second Dense: its bias only
    assert "Total params: 24" in text and "counted in the first one's row" in text


def test_summary_leaves_the_model_as_it_was():
    x = np.ones((5, 2, 3), np.float32)
    gru = layers.GRU(3, 4, stateful=True)
    gru(x)                                           # carries a state for a batch of 5
    calls = []
    gru.register_forward_hook(lambda *args: calls.append(1))
    text = nn.summary(gru, (2, 3), print_fn=None)
    assert text.splitlines()[2].startswith("GRU ") and not calls
    y = gru(x)                                       # still the batch of 5, and its caches are this call's
    gru.backward(np.ones_like(y))
    with pytest.raises(TypeError, match=r"summary: expected input_shape to be a tuple of sizes .* got 3"):
        nn.summary(layers.Dense(3, 2), 3)


def test_summary_of_models_a_single_zero_sample_would_trip():
    # a BatchNorm without running statistics needs two values a channel, even in eval mode
    batch_stats = nn.Sequential(layers.Dense(3, 4), layers.BatchNorm1D(4, track_running_stats=False))
    assert "Total params: 24" in nn.summary(batch_stats, (3,), print_fn=None)
    # no parameters: the dtype of the running statistics
    buffers_only = nn.Sequential(layers.BatchNorm1D(4, affine=False)).astype(np.float64)
    assert buffers_only.dtype == np.float64 and nn.Sequential(layers.ReLU()).dtype is None
    assert "Total params: 0" in nn.summary(buffers_only, (4,), print_fn=None)
    ids = nn.Sequential(layers.Embedding(10, 4), layers.LSTM(4, 3))
    with pytest.raises(TypeError, match=r"^summary: the model refused a batch of zeros of shape \(2, 5\) "
                                        r"and dtype float32 \(Embedding: expected integer indices.*\(integer "
                                        r"ids for an Embedding\)$"):
        nn.summary(ids, (5,))
    assert "(None, 5, 3)" in nn.summary(ids, (5,), dtype=np.int64, print_fn=None)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, d: nn.fit(m, nn.MSELoss(), None, d, epochs=0), ValueError,
     "fit: expected epochs to be a positive int, got 0"),
    (lambda m, d: nn.fit(m, nn.MSELoss(), None, d, epochs=2.0), ValueError, "epochs to be a positive int, got 2.0"),
    (lambda m, d: nn.fit(m, nn.MSELoss(), None, d, epochs=1, batch_size=0), ValueError,
     "fit: expected batch_size to be a positive int, got 0"),
    (lambda m, d: nn.evaluate(m, nn.MSELoss(), d, batch_size=-1), ValueError,
     "evaluate: expected batch_size to be a positive int, got -1"),
    (lambda m, d: nn.evaluate(m, nn.MSELoss(), (d[0].tolist(), d[1])), TypeError,
     r"evaluate: expected data as an \(x, y\) pair of numpy arrays .* got a pair of \(list, ndarray\)"),
    (lambda m, d: nn.fit(m, nn.MSELoss(), None, (d[0], list(d[1])), epochs=1), TypeError,
     r"fit: expected data as an \(x, y\) pair .* \(ndarray, list\)"),
    (lambda m, d: nn.evaluate(m, nn.MSELoss(), (d[0].tolist(), d[1].tolist())), TypeError,
     r"evaluate: expected each batch to be an \(xb, yb\) pair, got a list of 4 items as batch 1"),
    (lambda m, d: nn.evaluate(m, nn.MSELoss(), {"x": d[0], "y": d[1]}), TypeError,
     r"evaluate: expected each batch to be an \(xb, yb\) pair, got str as batch 1"),
])
def test_fit_and_evaluate_reject_bad_arguments(call, error, message):
    model = layers.Dense(1, 1)
    data = (np.ones((4, 1), np.float32), np.ones((4, 1), np.float32))
    start = model.weight.data.copy()
    with pytest.raises(error, match=message):
        call(model, data)
    np.testing.assert_array_equal(model.weight.data, start)


@pytest.mark.parametrize("call, error, message", [
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, val_data=(d[0][:3], d[1][:2])), ValueError,
     "fit: expected val_data as x and y with the same number of samples, got 3 and 2"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, list(d), epochs=1), TypeError,
     r"fit: expected train_data as an \(x, y\) tuple of arrays .* got a list of 2 arrays"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), None, d, epochs=1), TypeError,
     r"fit: expected optimizer to be an optimizer \(with a step\(\) method\), got NoneType"),
    (lambda m, o, d: nn.fit(m, o, nn.MSELoss(), d, epochs=1), TypeError,
     "fit: expected loss_fn to be an nn loss"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, scheduler=object()), TypeError,
     "fit: expected scheduler to be a scheduler"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, before_step=1), TypeError,
     "fit: expected before_step to be callable or None, got int"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, progress="no"), TypeError,
     "fit: expected progress to be True or False, got 'no'"),
    (lambda m, o, d: nn.fit(o, nn.MSELoss(), o, d, epochs=1), TypeError,
     "fit: expected model to be an nn.Module, got SGD"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss, o, d, epochs=1), TypeError,
     r"fit: expected loss_fn to be an nn loss, got the class MSELoss; pass an instance, MSELoss\(...\)"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d[0], epochs=1), TypeError,
     r"fit: expected train_data as an \(x, y\) tuple of arrays or an iterable of \(xb, yb\) batches, got ndarray"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, iter([d]), epochs=2), TypeError,
     r"fit: expected train_data .* that can be read 2 times \(a list, a DataLoader\), got list_iterator"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=2, val_data=(b for b in [d])), TypeError,
     r"fit: expected val_data .* read 2 times .* got generator, which one pass uses up"),
    (lambda m, o, d: nn.evaluate(None, nn.MSELoss(), d), TypeError,
     "evaluate: expected model to be an nn.Module, got NoneType"),
    (lambda m, o, d: nn.evaluate(m, nn.MSELoss(), None), TypeError,
     r"evaluate: expected data as an \(x, y\) tuple .* got NoneType"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, [(*d, None)], epochs=1), TypeError,
     r"fit: expected each batch to be an \(xb, yb\) pair, got a tuple of 3 items as batch 1"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, val_data=(np.ones((4, 2), np.float32), d[1])),
     ValueError, r"fit: expected val_data samples like train_data's, x \(1,\) of float32 and y \(1,\), got "
                 r"x \(2,\) of float32 and y \(1,\)"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), optim.SGD(copy.deepcopy(m).parameters(), lr=0.1), d, epochs=1),
     ValueError, r"fit: the optimizer updates none of the model's trainable parameters .* build it over "
                 r"model.parameters\(\)"),
    (lambda m, o, d: nn.fit(m, nn.MSELoss(), o, d, epochs=1, scheduler=optim.StepLR(
        optim.SGD(m.parameters(), lr=0.1), 1)), ValueError,
     "fit: the scheduler sets the learning rate of another optimizer than the one given"),
])
def test_fit_checks_its_arguments_before_the_first_step(call, error, message):
    model = layers.Dense(1, 1)
    data = (np.ones((4, 1), np.float32), np.ones((4, 1), np.float32))
    opt = optim.SGD(model.parameters(), lr=0.1)
    start = model.weight.data.copy()
    with pytest.raises(error, match=message):
        call(model, opt, data)
    np.testing.assert_array_equal(model.weight.data, start)


def test_a_fit_failing_before_its_first_step_leaves_the_model_as_it_was():
    """Here the loss refuses the first batch's targets, after the training forward has moved
    BatchNorm's running statistics and zero_grad has cleared the gradients."""
    model = nn.Sequential(layers.Dense(3, 4), layers.BatchNorm1D(4), layers.Dense(4, 2))
    for p in model.parameters():
        p.grad[...] = 1.0
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"MSELoss: expected target of shape \(4, 2\)"):
        nn.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), (x, np.zeros(8, np.float32)),
               epochs=1, batch_size=4, progress=False)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(np.all(p.grad == 1.0) for p in model.parameters())


def test_a_val_data_failure_names_val_data_and_the_epoch():
    model = layers.Dense(3, 2)
    x, y = np.ones((4, 3), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"fit: val_data, after epoch 1: CrossEntropyLoss: expected labels in \[0, 2\)"):
        nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=1,
               val_data=(x, y + 5), progress=False)


def test_fit_keeps_each_modules_mode_and_gives_it_back():
    x, y = np.ones((8, 3), np.float32), np.zeros(8, np.int64)
    model = nn.Sequential(layers.Dense(3, 4), layers.BatchNorm1D(4), layers.Dropout(0.5), layers.Dense(4, 2))
    model[1].eval()                                          # a frozen BatchNorm
    seen = []
    model[2].register_forward_hook(lambda m, inputs, output: seen.append((m.training, model[1].training)))
    fit = lambda: nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y),
                         epochs=1, batch_size=4, val_data=(x, y), progress=False)
    fit()
    assert seen[:2] == [(True, False)] * 2                   # training, the BatchNorm kept frozen
    assert [m.training for m in model] == [True, False, True, True]
    model.eval()
    seen.clear()
    fit()                                                    # an eval model trains, then is eval again
    assert seen[:2] == [(True, True)] * 2 and not any(m.training for m in model.modules())


def test_fit_stops_before_the_step_of_a_batch_whose_loss_is_not_finite():
    x, y = np.ones((6, 2), np.float32), np.ones((6, 1), np.float32)
    x[4, 0] = np.nan                                          # in the third batch of 2
    model = layers.Dense(2, 1)
    opt = optim.Adam(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match=r"fit: the loss of epoch 1, batch 3 is nan; that batch took no step"):
        nn.fit(model, nn.MSELoss(), opt, (x, y), epochs=1, batch_size=2, progress=False)
    assert np.isfinite(model.weight.data).all() and opt.state[0]["step"] == 2


def test_fit_steps_over_a_batch_whose_every_target_is_ignored():
    x, y = np.ones((4, 2), np.float32), np.array([-100, -100, 0, 1])     # batch 1 of 2: all ignored
    model = layers.Dense(2, 2)
    history = nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=1,
                     batch_size=2, progress=False)
    assert np.isfinite(history["loss"][0]) and np.isfinite(model.weight.data).all()


def test_fit_starts_each_epoch_of_a_stateful_layer_from_zeros():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5, 2)).astype(np.float32), rng.integers(0, 3, 4)
    model = nn.Sequential(layers.GRU(2, 4, stateful=True, return_sequences=False, rng=0),
                          layers.Dense(4, 3, rng=0))
    starts = []
    model[0].register_forward_hook(lambda m, inputs, output: starts.append(m._initial_state(None, 2)[0].copy()))
    nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), (x, y), epochs=2,
           batch_size=2, progress=False)
    # the hook runs after each forward: the state the next batch starts from
    np.testing.assert_array_equal(starts[0], starts[2])      # epoch 2's second batch = epoch 1's
    with pytest.raises(ValueError, match="expected the 4 samples of train_data to be a multiple of batch_size=3"):
        nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), (x, y), epochs=1,
               batch_size=3, progress=False)


@pytest.mark.parametrize("call, message", [
    (lambda m, o, x, y: nn.fit(m, nn.CrossEntropyLoss(), o, (x, y), epochs=1, batch_size=2,
                               val_data=(x[:3], y[:3]), progress=False),
     "fit: .* expected the 3 samples of val_data to be a multiple of batch_size=2"),
    (lambda m, o, x, y: nn.fit(m, nn.CrossEntropyLoss(), o, datasets.DataLoader(x[:3], y[:3], 2), epochs=1,
                               progress=False),
     r"fit: .* expected the 3 samples of train_data to be a multiple of its batch_size=2 \(or drop_last=True\)"),
    (lambda m, o, x, y: nn.evaluate(m, nn.CrossEntropyLoss(), (x[:3], y[:3]), batch_size=2),
     "evaluate: .* expected the 3 samples of data to be a multiple of batch_size=2"),
])
def test_a_stateful_layer_refuses_a_shorter_last_batch_before_any_step(call, message):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5, 2)).astype(np.float32), rng.integers(0, 3, 4)
    model = nn.Sequential(layers.GRU(2, 4, stateful=True, return_sequences=False, rng=0),
                          layers.Dense(4, 3, rng=0))
    start = model[1].weight.data.copy()
    with pytest.raises(ValueError, match=message):
        call(model, optim.SGD(model.parameters(), lr=0.1), x, y)
    np.testing.assert_array_equal(model[1].weight.data, start)
    assert model[0].carried_state is None


def test_fit_rejects_an_epoch_without_batches():
    x, y = np.ones((3, 2), np.float32), np.array([0, 1, 0])
    model = layers.Dense(2, 2)
    loader = datasets.DataLoader(x, y, batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="epoch 1 got no batches"):
        nn.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader,
               epochs=1, progress=False)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
def test_loss_over_batches_is_the_mean_over_counted_targets(batch_size):
    """Batches holding different numbers of counted targets (some none) weigh by that number,
    so evaluate's loss is one big batch's whatever the batch size; for (N, T, C) logits the
    mean is per token."""
    rng = np.random.default_rng(0)
    model = layers.Dense(3, 4, dtype=np.float64)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    x = rng.standard_normal((10, 3))
    y = np.array([-1, -1, -1, -1, 2, -1, 0, 3, 1, 1])        # the first batch of 4: all ignored
    whole = loss_fn(model(x), y)
    assert nn.evaluate(model, loss_fn, (x, y), batch_size)["loss"] == pytest.approx(whole, rel=1e-12)

    seqs = rng.standard_normal((6, 5, 3))
    tokens = rng.integers(-1, 4, size=(6, 5))
    whole = loss_fn(model(seqs.reshape(-1, 3)), tokens.reshape(-1))
    assert nn.evaluate(model, loss_fn, (seqs, tokens), batch_size)["loss"] == pytest.approx(whole, rel=1e-12)


def test_fit_loss_is_the_epochs_mean_per_element():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((7, 2)), rng.standard_normal((7, 3))
    model = layers.Dense(2, 3, dtype=np.float64)
    for reduction in ("mean", "sum"):
        loss_fn = nn.MSELoss(reduction=reduction)
        expected = nn.MSELoss()(model(x), y)
        h = nn.fit(model, loss_fn, optim.SGD(model.parameters(), lr=0.0), (x, y), epochs=1,
                   batch_size=3, progress=False)
        assert h["loss"][0] == pytest.approx(expected, rel=1e-12)


def test_evaluate_on_class_probabilities_counts_the_likeliest_class():
    rng = np.random.default_rng(3)
    model = layers.Dense(3, 4, dtype=np.float64)
    x, q = rng.standard_normal((9, 3)), rng.dirichlet(np.ones(4), size=9)
    result = nn.evaluate(model, nn.CrossEntropyLoss(), (x, q), batch_size=4)
    assert result["loss"] == pytest.approx(nn.CrossEntropyLoss()(model(x), q), rel=1e-12)
    assert result["accuracy"] == np.mean(model(x).argmax(1) == q.argmax(1))


def test_evaluate_neither_fails_on_nor_moves_the_state_training_carries():
    """Validation in batches of another size starts from zeros; training carries on after it
    from the state it had reached."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 6, 2)).astype(np.float32), rng.integers(0, 3, 12)
    model = nn.Sequential(layers.GRU(2, 4, stateful=True, return_sequences=False, rng=0),
                          layers.Dense(4, 3, rng=0))
    loss_fn = nn.CrossEntropyLoss()
    history = nn.fit(model, loss_fn, optim.Adam(model.parameters()), (x, y), epochs=2,
                     val_data=(x[:5], y[:5]), batch_size=6, progress=False)
    assert len(history["val_loss"]) == 2
    held = model[0].carried_state.copy()
    fresh = copy.deepcopy(model)
    fresh[0].reset_state()
    expected = nn.evaluate(fresh, loss_fn, (x[:5], y[:5]), batch_size=5)
    assert nn.evaluate(model, loss_fn, (x[:5], y[:5]), batch_size=5) == expected
    np.testing.assert_array_equal(model[0].carried_state, held)
    model.astype(np.float64)                             # the carried state follows on its next use
    nn.evaluate(model, loss_fn, (x[:5].astype(np.float64), y[:5]), batch_size=5)
    np.testing.assert_array_equal(model[0].carried_state, held)
