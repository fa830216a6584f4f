"""The sequence benchmarks: ``cnn_vs_rnn``, ``long_memory`` and ``sequence_scaling`` run end to
end in quick mode, the MNIST-1D model twins, and the small pieces of logic the reports rely on."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

import datasets
import nn
from benchmarks import cnn_vs_rnn, harness, long_memory, mnist1d_models, sequence_scaling


def _all_finite(obj):
    """Every number in a JSON tree is finite (None allowed: the report's 'not measured')."""
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


# ----------------------------------------------------------------------------- quick runs

def test_cnn_vs_rnn_quick(tmp_path):
    cnn_vs_rnn.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "cnn_vs_rnn.json").read_text())
    assert {"config", "machine", "phases", "rows", "runs", "parameter_sharing", "timing",
            "gradient_ratios", "claims"} <= set(data)
    rows = {(r["model"], r["variant"]): r for r in data["rows"]}
    expected = ({(m, "ordered") for m in mnist1d_models.MODELS}
                | {(m, "shuffled") for m in ("mlp", "cnn", "gru")})
    assert set(rows) == expected
    for (model, variant), row in rows.items():
        assert 0 <= row["handprop"]["test_accuracy"] <= 100 and row["params"] > 0
        if row["torch"] is None:
            continue
        assert row["time_ratio"] > 0
        if model in mnist1d_models.RECURRENT:   # timed on a window, as a default run times them
            assert row["torch"]["test_accuracy"] is None
            assert row["torch"]["steps_trained"] == cnn_vs_rnn.QUICK_TORCH_WINDOW
        else:                               # twins start equal and see the same batches
            assert abs(row["torch"]["test_accuracy"] - row["handprop"]["test_accuracy"]) <= 2.0
    assert rows[("cnn", "ordered")]["paper"] == 94 and rows[("gru", "shuffled")]["paper"] == 57
    aspects = [c["aspect"] for c in data["claims"]]
    assert {"data type", "parameter sharing", "processing style", "RNN weakness",
            "LSTM / GRU"} <= set(aspects)
    assert all(c["evidence"] and c["verdict"] for c in data["claims"])
    assert _all_finite(data)
    assert "## The classic comparison, measured" in (tmp_path / "cnn_vs_rnn.md").read_text()


def test_long_memory_quick(tmp_path):
    long_memory.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "long_memory.json").read_text())
    assert {"config", "machine", "runs", "gradients"} <= set(data)
    expected = {(c, T) for c in long_memory.CELLS for T in (10, 20)}
    assert {(r["cell"], r["T"]) for r in data["runs"]} == expected
    for run in data["runs"]:
        assert run["final_mse"] >= 0 and run["history"] and run["steps_run"] <= run["budget"]
    for cell, g in data["gradients"].items():
        assert len(g["init"]) == g["T"] and len(g["trained"]) == g["T"]
        assert 0 < g["ratio_init"] < 10 and 0 < g["ratio_trained"] < 10
    assert _all_finite(data)


def test_long_memory_evaluates_the_last_step_of_any_budget():
    config = {**long_memory.QUICK_CONFIG, "budget": {10: 30}}       # not a multiple of eval_every 20
    x, y = datasets.adding_problem(16, 10, seed=1)
    record, _ = long_memory.train_adding("gru", 10, config, 0, (x, y))
    assert [step for step, _ in record["history"]] == [20, 30]
    assert record["steps_run"] == 30 and record["final_mse"] == record["history"][-1][1]


def test_sequence_scaling_quick(tmp_path):
    sequence_scaling.main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sequence_scaling.json").read_text())
    assert {"config", "params", "rows", "slopes", "slopes_asymptotic"} <= set(data)
    lengths = data["config"]["lengths"]
    handprop = [r for r in data["rows"] if r["impl"] == "handprop"]
    expected = {(m, T) for m in sequence_scaling.MODELS for T in lengths}
    assert {(r["model"], r["T"]) for r in handprop} == expected
    assert all(r["ms"] > 0 and r["gflops"] > 0 for r in data["rows"])
    assert set(data["slopes"]["handprop"]) == set(sequence_scaling.MODELS)
    assert _all_finite(data)


def test_claims_only_rebuilds_the_classic_table_from_the_results_in_the_folder(tmp_path):
    first = cnn_vs_rnn.main(["--quick", "--no-torch", "--models", "cnn,gru", "--out", str(tmp_path)])
    slowness = first["claims"][-1]
    assert "run benchmarks.sequence_scaling" in slowness["evidence"]       # not run yet
    sequence_scaling.main(["--quick", "--no-torch", "--no-reference", "--out", str(tmp_path)])

    rebuilt = cnn_vs_rnn.main(["--quick", "--claims-only", "--out", str(tmp_path)])
    slowness = rebuilt["claims"][-1]
    assert slowness["evidence"].startswith("forward+backward at T=100 relative to a Conv1D stack")
    assert [c["evidence"] for c in rebuilt["claims"][:-1]] == [c["evidence"] for c in first["claims"][:-1]]
    data = json.loads((tmp_path / "cnn_vs_rnn.json").read_text())
    assert data["rows"] == json.loads(json.dumps(first["rows"])) and data["claims"] == rebuilt["claims"]
    assert data["claims_rebuilt"]["sources"]["long_memory"] is None
    assert data["claims_rebuilt"]["sources"]["sequence_scaling"] is not None
    assert "rebuilt on" in (tmp_path / "cnn_vs_rnn.md").read_text()


# ----------------------------------------------------------------------------- the models

PAPER_PARAMS = {"logistic": 410, "mlp": 15210, "cnn": 5210, "gru": 5134, "lstm": 5242, "rnn": 4918}


@pytest.mark.parametrize("name", mnist1d_models.MODELS)
def test_mnist1d_models_shapes_and_params(name):
    model = mnist1d_models.build(name, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 40)).astype(np.float32)
    assert model(x).shape == (3, 10)
    assert mnist1d_models.count_parameters(model) == PAPER_PARAMS[name]
    assert model.backward(np.ones((3, 10), np.float32)).shape == (3, 40)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gru"])
def test_mnist1d_models_gradcheck(name):
    model = mnist1d_models.build(name, seed=1, input_size=12 if name == "gru" else 40)
    x = np.random.default_rng(1).standard_normal((2, 12 if name == "gru" else 40))
    report = nn.gradcheck(model, x, max_samples=12)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", mnist1d_models.MODELS)
def test_mnist1d_torch_twins_match(name):
    torch = pytest.importorskip("torch")
    model, twin = mnist1d_models.twins(name, seed=0)
    x = np.random.default_rng(2).standard_normal((5, 40)).astype(np.float32)
    y = np.array([0, 3, 9, 1, 2])
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    torch_grads = dict(twin.named_parameters())
    for key, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, torch_grads[key].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


def test_conv_output_length_matches_the_papers_head():
    assert mnist1d_models.conv_output_length(40) == 5       # ConvBase's linear_in = 25 * 5 = 125


# ----------------------------------------------------------------------------- report logic

def test_batches_follow_the_packages_order():
    x, y = np.arange(10)[:, None], np.arange(10)
    xb, yb = cnn_vs_rnn.batch_at(3, x, y, 4)                # (3 * 4) % 10 = 2
    assert yb.tolist() == [2, 3, 4, 5]
    assert cnn_vs_rnn.batch_at(0, x, y, 4)[1].tolist() == [0, 1, 2, 3]


def test_accuracy_is_percent_of_argmax_hits():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert cnn_vs_rnn.accuracy(logits, np.array([1, 0, 0, 0])) == 75.0


def test_steps_to_threshold():
    history = [(100, 0.17), (200, 0.02), (300, 0.009), (400, 0.001)]
    assert long_memory.steps_to_threshold(history, 0.01) == 300
    assert long_memory.steps_to_threshold(history, 0.0001) is None
    assert long_memory.steps_to_threshold([], 0.01) is None
    assert long_memory.steps_to_threshold([(100, 0.01)], 0.01) is None    # strictly below


def test_fit_slope_recovers_a_power_law():
    T = np.array([10, 100, 1000])
    assert sequence_scaling.fit_slope(T, 3e-3 * T ** 1.0) == pytest.approx(1.0)
    assert sequence_scaling.fit_slope(T, 5.0 * T ** 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        sequence_scaling.fit_slope([10], [1.0])


def test_gradient_profile_is_ordered_by_distance_to_the_loss():
    x, y = datasets.adding_problem(8, 15, seed=0)
    model = long_memory.make_model("rnn", 8, seed=0)
    before = model.state_dict()
    profile = long_memory.gradient_profile(model, x, y)
    assert profile.shape == (15,) and np.all(profile > 0)
    assert profile[0] > profile[-1]          # a fresh tanh RNN: the far end gets less
    after = model.state_dict()
    assert model.dtype == np.float32 and all(np.array_equal(v, after[k]) for k, v in before.items())
    assert all(not p.grad.any() for p in model.parameters())


def test_plots_are_skipped_without_matplotlib(monkeypatch, tmp_path):
    for module in (cnn_vs_rnn, long_memory, sequence_scaling):
        monkeypatch.setattr(module, "load_pyplot", lambda: None)
    assert cnn_vs_rnn.plot([], tmp_path) == []
    assert long_memory.plot(long_memory.QUICK_CONFIG, [], {}, [], tmp_path) == []
    assert sequence_scaling.plot(sequence_scaling.QUICK_CONFIG, [], {}, tmp_path) == []


def test_quick_runs_write_apart_from_the_measured_results(monkeypatch, tmp_path):
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(harness, "import_torch", lambda: (object(), None))     # as if installed
    assert cnn_vs_rnn.parse_args(["--quick"]).out == tmp_path / "results" / "quick"
    assert cnn_vs_rnn.parse_args(["--seeds", "3", "--torch-full"]).out == tmp_path / "results"
    assert cnn_vs_rnn.parse_args(["--quick", "--out", str(tmp_path / "x")]).out == tmp_path / "x"
    assert not (tmp_path / "results").exists() and not (tmp_path / "x").exists()   # nothing made yet


def test_lockstep_warms_each_trainer_up_on_a_copy_before_timing():
    log = []

    class Recorder:
        impl = "fake"

        def __init__(self, name):
            self.name = name

        def fresh_copy(self):
            return Recorder(self.name + " copy")

        def step(self, xb, yb):
            log.append(self.name)

        def predict(self, x):
            return np.zeros((len(x), 2))

    x, y = np.zeros((6, 3)), np.zeros(6, np.int64)
    protocol = {"steps": 2, "batch_size": 2, "eval_every": 1}
    results = cnn_vs_rnn.train_lockstep([Recorder("a"), Recorder("b")], [3, 1], ((x, y), (x, y)),
                                        protocol, "test")
    assert log == ["a copy", "b copy", "a", "b", "a", "a"]
    assert [r["steps_trained"] for r in results] == [3, 1]


@pytest.mark.parametrize("module, argv, message", [
    (cnn_vs_rnn, ["--seeds", "0"], "argument --seeds: expected an integer >= 1, got '0'"),
    (cnn_vs_rnn, ["--threads", "abc"], "argument --threads: expected an integer >= 1, got 'abc'"),
    (cnn_vs_rnn, ["--out", ""], "argument --out: expected a path, got ''"),
    (cnn_vs_rnn, ["--threads", "99"], "argument --threads: expected at most"),
    (long_memory, ["--lengths", "10,1"], "argument --lengths: expected distinct lengths of at least 2"),
    (long_memory, ["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
    (long_memory, ["--quick", "--budget", "10"], "--budget 10 is less than one evaluation's worth"),
    (long_memory, ["--cells", ","], "argument --cells: expected one or more distinct names from rnn,lstm,gru, got ','"),
    (long_memory, ["--cells", "lstm,lstm"], "argument --cells: expected one or more distinct names from rnn,lstm,gru, got 'lstm,lstm'"),
    (long_memory, ["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (long_memory, ["--seed", "one"], "argument --seed: expected an integer >= 0, got 'one'"),
    (cnn_vs_rnn, ["--models", "cnn,cnn"], "argument --models: expected one or more distinct names from "
                                          "logistic,mlp,cnn,gru,lstm,rnn, got 'cnn,cnn'"),
    (cnn_vs_rnn, ["--models", ""], "argument --models: expected one or more distinct names"),
    (cnn_vs_rnn, ["--models", "cnn,transformer"], "argument --models: expected one or more"),
    (cnn_vs_rnn, ["--no-torch", "--torch-full"], "--torch-full trains PyTorch's twins fully: expected it without --no-torch"),
    (cnn_vs_rnn, ["--out", "/proc/no-such-folder/out"], "--out /proc/no-such-folder/out: cannot write there"),
    (cnn_vs_rnn, ["--claims-only", "--seeds", "2", "--no-torch"],
     "--claims-only trains nothing: expected no training options, got --seeds --no-torch"),
    (sequence_scaling, ["--out", "/proc/no-such-folder/out"], "cannot write there"),
    (sequence_scaling, ["--threads", "-1"], "argument --threads: expected an integer >= 1, got '-1'"),
])
def test_bad_arguments_are_refused_before_any_work(module, argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        module.main(argv)
    assert exit.value.code == 2 and message in capsys.readouterr().err       # argparse's usage error


def test_claims_only_without_a_run_in_the_folder_says_what_it_expected(tmp_path):
    with pytest.raises(SystemExit, match="expected a cnn_vs_rnn.json written by a run of this "
                                         "script at .*, got no such file"):
        cnn_vs_rnn.main(["--claims-only", "--out", str(tmp_path)])
    (tmp_path / "cnn_vs_rnn.json").write_text('{"rows": []}')
    with pytest.raises(SystemExit, match="got a file without its measurements"):
        cnn_vs_rnn.main(["--claims-only", "--out", str(tmp_path)])


@pytest.mark.parametrize("at_init, after_training, verdict", [
    (1e-20, None, "backed at initialisation (run benchmarks.long_memory for after training)"),
    (1e-20, 1e-25, "backed"), (1e-20, 0.5, "not backed by this run"), (0.5, None, "not backed by this run")])
def test_the_vanishing_gradient_verdict_says_what_it_rests_on(at_init, after_training, verdict):
    assert cnn_vs_rnn._weakness_verdict(at_init, after_training) == verdict


# ----------------------------------------------------------------------------- where runs write

@pytest.mark.parametrize("module, argv, destination", [
    (long_memory, [], "results"),
    (long_memory, ["--lengths", "100", "--cells", "lstm", "--budget", "100"], "results/custom"),
    (long_memory, ["--seed", "1"], "results/custom"),
    (long_memory, ["--quick"], "results/quick"),
    (sequence_scaling, [], "results"),
    (sequence_scaling, ["--no-reference"], "results/custom"),
    (sequence_scaling, ["--no-torch"], "results/custom"),
    (cnn_vs_rnn, ["--seeds", "3", "--torch-full"], "results"),
    (cnn_vs_rnn, ["--claims-only"], "results"),
    (cnn_vs_rnn, [], "results/custom"),                                  # one seed: not the committed table
    (cnn_vs_rnn, ["--seeds", "3", "--torch-full", "--models", "cnn,gru"], "results/custom"),
    (cnn_vs_rnn, ["--quick", "--claims-only"], "results/quick"),
])
def test_only_a_committed_runs_options_write_to_the_committed_folder(module, argv, destination, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(harness, "import_torch", lambda: (object(), None))     # as if installed
    assert module.parse_args(argv).out == tmp_path / destination
    assert not (tmp_path / "results").exists()                  # choosing creates nothing


def test_without_torch_only_the_runs_that_need_none_write_to_the_committed_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(harness, "import_torch", lambda: (None, ModuleNotFoundError(name="torch")))
    assert cnn_vs_rnn.parse_args(["--seeds", "3", "--torch-full"]).out == tmp_path / "custom"
    assert sequence_scaling.parse_args([]).out == tmp_path / "custom"
    assert cnn_vs_rnn.parse_args(["--claims-only"]).out == tmp_path       # trains nothing
    assert long_memory.parse_args([]).out == tmp_path                     # never uses PyTorch


def test_an_output_folder_that_is_a_file_or_absent_is_handled_before_anything_is_made(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        long_memory.main(["--quick", "--out", str(blocker)])
    assert f"--out {blocker}: expected a folder, got a file" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="got no such file"):
        cnn_vs_rnn.main(["--claims-only", "--out", str(tmp_path / "empty")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_machine_info_records_the_pytorch_the_run_imported():
    assert cnn_vs_rnn.machine_info()["torch"] is None
    assert cnn_vs_rnn.machine_info(SimpleNamespace(__version__="2.13.0+cpu"))["torch"] == "2.13.0+cpu"


# ----------------------------------------------------------------------------- the claims table

def _claims(long_memory=None, gru=89.0, mlp=65.0, lstm_at_init=1e-18):
    """The classic comparison from small made-up measurements (no shuffled rows, no timing)."""
    rows = [{"model": m, "variant": "ordered", "handprop": {"test_accuracy": acc}, "params": n}
            for m, acc, n in (("mlp", mlp, 15210), ("cnn", 93.0, 5210), ("gru", gru, 5134))]
    sharing = {m: {L: {"total": 1000, "body": 324, "input_dependent": L} for L in (40, 400)}
               for m in ("mlp", "cnn", "gru")}
    grads = {"T": 30, "rnn": 1e-20, "lstm": lstm_at_init, "gru": 1e-17}
    claims = cnn_vs_rnn.claim_rows(rows, sharing, None, grads, long_memory, None)
    return {c["aspect"]: c for c in claims if c["claim"] != claims[-1]["claim"]}   # the slowness row aside


def _long_memory(T, trained, runs=()):
    """A ``long_memory.json`` with the trained gradient ratios ``{cell: ratio}`` at length ``T``
    and adding-problem ``runs`` ``(cell, T, steps_to_threshold)``."""
    return {"config": {"threshold": 0.01},
            "gradients": {c: {"T": T, "ratio_trained": r} for c, r in trained.items()},
            "runs": [{"cell": c, "T": t, "steps_to_threshold": s, "budget": 3000, "final_mse": 0.2}
                     for c, t, s in runs]}


def test_each_gradient_figure_is_labelled_with_the_length_it_was_measured_at():
    claims = _claims(_long_memory(20, {"rnn": 1.7e-7, "lstm": 8.4e-4, "gru": 1.7e-3}))
    weakness = claims["RNN weakness"]["evidence"]
    assert "(loss on the last step, T=30) at initialisation" in weakness
    assert ("; after training on the adding problem at T=20: RNN 1.7e-07, LSTM 8.4e-04, GRU 1.7e-03"
            in weakness)
    fix = claims["LSTM / GRU"]
    assert fix["evidence"] == ("at initialisation (T=30) LSTM / RNN gradient ratio = 1e+02; after training "
                               "(T=20) LSTM 8.4e-04 vs RNN 1.7e-07 (5e+03x)")
    # Judged on the trained ratios it shows, not on runs at T=100 that are not there.
    assert fix["verdict"].startswith("not backed by this run (on the gradients after training at T=20")


def test_the_lstm_verdict_rests_on_what_the_row_shows():
    trained = {"rnn": 1e-25, "lstm": 9e-2, "gru": 0.3}
    by_gradients = _claims(_long_memory(20, trained))["LSTM / GRU"]["verdict"]
    assert by_gradients.startswith("backed (on the gradients after training at T=20")
    assert "the LSTM's gradient vanishes too" in by_gradients        # 1e-18 at initialisation
    assert _claims(_long_memory(20, trained), lstm_at_init=0.5)["LSTM / GRU"]["verdict"] == (
        "backed (on the gradients after training at T=20: the LSTM's ratio must stay at or above 0.001, "
        "the RNN's fall below)")                                     # no "only after training" then
    solved = _long_memory(100, trained, [("rnn", 100, None), ("lstm", 100, 1900)])
    fix = _claims(solved)["LSTM / GRU"]
    assert fix["verdict"].startswith("backed; but only after training")
    assert fix["evidence"].endswith("; adding problem T=100: RNN not within 3000 steps (MSE 0.200), "
                                    "LSTM reaches MSE < 0.01 in 1900 steps")
    unsolved = _long_memory(100, trained, [("rnn", 100, None), ("lstm", 100, None)])
    assert _claims(unsolved)["LSTM / GRU"]["verdict"] == "not backed by this run"
    assert _claims()["LSTM / GRU"]["verdict"].startswith("not at initialisation: both vanish")


@pytest.mark.parametrize("gru, adding_runs, verdict", [
    (89.0, (), "backed"),
    (70.0, (), "not backed by this run"),                                  # within 10 points of the MLP
    (89.0, [("gru", 200, 900), ("lstm", 200, None)], "backed"),
    (89.0, [("gru", 200, None), ("lstm", 200, None)], "not backed by this run"),   # no memory of 200 steps
])
def test_the_memory_verdict_tests_what_its_evidence_shows(gru, adding_runs, verdict):
    strength = _claims(_long_memory(20, {}, adding_runs), gru=gru)["RNN strength"]
    assert strength["evidence"].startswith(f"GRU {gru:.1f}% with a 324-parameter cell vs MLP 65.0% "
                                           "(CNN 93.0%)")
    assert ("adding problem T=200" in strength["evidence"]) == bool(adding_runs)
    assert strength["verdict"] == verdict


# ----------------------------------------------------------------------------- scaling report

def _scaling_rows(impls):
    config = sequence_scaling.QUICK_CONFIG
    return [{"model": m, "impl": i, "T": T, "ms": T * (2 if i == "torch" else 1), "forward_ms": 1.0,
             "gflops": 1.0} for i in impls for m in sequence_scaling.MODELS for T in config["lengths"]]


@pytest.mark.parametrize("impls", [("handprop", "torch"), ("handprop",)])
def test_the_scaling_summary_says_what_each_column_holds(impls):
    config, rows = sequence_scaling.QUICK_CONFIG, _scaling_rows(impls)
    slopes = sequence_scaling.fit_slopes(rows, 0)
    params = {m: 16000 for m in sequence_scaling.MODELS}
    report = sequence_scaling.report(config, rows, slopes, slopes, params)
    summary = report.split("## Growth exponents")[1].splitlines()[2]
    if "torch" in impls:
        assert summary.startswith("| model | params | slope, all T (handprop / PyTorch) | "
                                  "slope, T ≥ 32 (handprop / PyTorch) |")
        assert "| handprop / PyTorch |" in summary and "| 1.00 / 1.00 | 1.00 / 1.00 |" in report
    else:
        assert summary.startswith("| model | params | slope, all T (handprop) | slope, T ≥ 32 (handprop) |")
        assert "PyTorch" not in report


# ----------------------------------------------------------------------------- quick mode, warm-up

def test_quick_times_the_recurrent_twins_on_a_window_as_a_default_run_does():
    steps = dict(((m, s), t) for m, s, t in cnn_vs_rnn.torch_plan(
        list(mnist1d_models.MODELS), ["mlp", "gru"], 21, True, False, cnn_vs_rnn.QUICK_TORCH_WINDOW))
    assert cnn_vs_rnn.QUICK_TORCH_WINDOW < cnn_vs_rnn.QUICK_PROTOCOL["steps"] + 1 == 21
    assert steps[("gru", False)] == steps[("rnn", False)] == cnn_vs_rnn.QUICK_TORCH_WINDOW
    assert steps[("cnn", False)] == 21 and steps[("gru", True)] is None


def test_long_memory_warms_every_cell_up_before_timing_any(monkeypatch):
    batches = []
    step = long_memory.train_step
    monkeypatch.setattr(long_memory, "train_step", lambda model, opt, loss_fn, x, y, clip:
                        batches.append((model.cell, len(x))) or step(model, opt, loss_fn, x, y, clip))
    config = {**long_memory.QUICK_CONFIG, "lengths": (4,), "budget": {4: 2}, "eval_every": 2,
              "hidden_size": 4, "batch_size": 5, "test_size": 8, "gradient_T": 4}
    runs, _ = long_memory.run(config, ["rnn", "gru"], seed=0)
    assert batches == [("rnn", 2), ("gru", 2), ("rnn", 5), ("rnn", 5), ("gru", 5), ("gru", 5)]
    assert [r["steps_run"] for r in runs] == [2, 2]


def test_a_run_writing_elsewhere_reads_the_sibling_results_where_their_runs_wrote(tmp_path):
    (tmp_path / "here").mkdir()
    (tmp_path / "committed").mkdir()
    (tmp_path / "committed" / "long_memory.json").write_text(json.dumps({"runs": []}))
    (tmp_path / "here" / "sequence_scaling.json").write_text(json.dumps({"rows": []}))
    long_mem, scaling = cnn_vs_rnn.load_siblings(tmp_path / "here", fallback=tmp_path / "committed")
    assert long_mem == {"runs": []} and scaling == {"rows": []}
    assert cnn_vs_rnn.load_siblings(tmp_path / "here") == (None, {"rows": []})
