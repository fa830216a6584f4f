"""Smoke tests of the CNN benchmarks: ``benchmarks.kernels`` and ``benchmarks.fashion_mnist``
in quick mode (tiny shapes, one step), and the equivalence of the PyTorch twins they time."""
import json

import numpy as np
import pytest

import nn
from benchmarks import conv_workloads, fashion_mnist, harness, kernels


def test_kernels_quick(tmp_path, capsys):
    path = tmp_path / "kernels.json"
    kernels.main(["--quick", "--only", "conv", "--no-jit-timing", "--json", str(path)])
    data = json.loads(path.read_text())
    names = {name for name, *_ in conv_workloads.CASES}
    assert {r["workload"] for r in data["results"]} == names
    assert {(r["workload"], r["impl"]) for r in data["results"]} >= {(n, "fast") for n in names}
    assert all(r["forward_backward"] > 0 for r in data["results"])
    out = capsys.readouterr().out
    assert "| workload | impl | forward ms |" in out and "fast cold (first call) ms" in out


def test_jit_table_reports_medians_and_range():
    run = lambda imp, first: {"import_s": imp, "first_calls_s": first}
    table = kernels.jit_table({"cold": [run(1.0, 9.0), run(1.0, 13.0), run(2.0, 10.0)],
                               "cached": [run(0.5, 0.5)]})
    assert "| cold | 1.00 | 10.00 | 12.00 | 10.00-14.00 |" in table
    assert "| cached | 0.50 | 0.50 | 1.00 | 1.00-1.00 |" in table


def test_conv_workloads_time_the_same_function_in_every_implementation():
    # The closures the benchmark times: same weights, same input, so the same output.
    pytest.importorskip("torch")
    for w in conv_workloads.workloads(quick=True):
        fast, reference, twin = (w.make(impl)[0]() for impl in ("fast", "reference", "torch"))
        np.testing.assert_allclose(reference, fast, rtol=1e-5, atol=1e-5, err_msg=w.name)
        np.testing.assert_allclose(twin.numpy(), fast, rtol=1e-5, atol=1e-5, err_msg=w.name)


def test_fashion_mnist_quick(tmp_path):
    path = tmp_path / "fm.json"
    results = fashion_mnist.main(["--quick", "--json", str(path)])
    assert json.loads(path.read_text())["train_size"] == 64
    for framework in ("handprop", "torch") if "torch" in results else ("handprop",):
        assert len(results[framework]["seconds"]) == 1
        assert 0 <= results[framework]["test_accuracy"][0] <= 1
    if fashion_mnist.load_pyplot() is not None:
        assert path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_fashion_mnist_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "load_pyplot", lambda: None)
    results = {"model": "cnn", "train_size": 1, "handprop": {"seconds": [1.0], "test_accuracy": [0.5]}}
    assert fashion_mnist.plot(results, tmp_path / "p.png") == [] and not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("model_name, shape", [("cnn", (3, 1, 28, 28)), ("lstm", (3, 28, 28))])
def test_fashion_mnist_twins_compute_the_same_function(model_name, shape):
    torch = pytest.importorskip("torch")
    nn.seed(0)
    model = fashion_mnist.build(model_name).eval()
    twin = fashion_mnist.build_torch(torch, model_name).eval()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5)


def test_default_result_names_keep_runs_apart():
    assert harness.result_name("kernels", "conv", 1, False) == "kernels_conv.json"
    assert harness.result_name("kernels", "recurrent", 2, False) == "kernels_recurrent_2threads.json"
    assert harness.result_name("fashion_mnist", "cnn", 1, True) == "fashion_mnist_cnn_quick.json"


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--train-size", "-5"], "argument --train-size: expected an integer >= 1, got -5"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["--quick", "--epochs", "5", "--train-size", "10"],
     "--quick trains one epoch on synthetic data: expected no --epochs --train-size"),
    (["--quick", "--json", "/tmp/results.png"], "--json /tmp/results.png: expected a file name ending in .json"),
])
def test_fashion_mnist_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        fashion_mnist.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("main", [kernels.main, fashion_mnist.main])
def test_an_unwritable_json_path_is_refused_before_any_work(main, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--json", str(tmp_path)])          # a folder, not a file name
    assert f"--json {tmp_path}: cannot write there (is a folder, expected a file name)" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        main(["--quick", "--json", str(blocker / "r.json")])   # a folder that cannot be made
    assert "cannot write there" in capsys.readouterr().err


def test_fashion_mnist_without_the_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HANDPROP_FASHION_MNIST", raising=False)     # nothing found anywhere
    monkeypatch.setattr("datasets.idx.DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(SystemExit) as exit:
        fashion_mnist.main(["--no-torch", "--json", str(tmp_path / "r.json")])
    message = str(exit.value.code)
    assert "Fashion-MNIST not found" in message and "apt-get install dataset-fashion-mnist" in message
    assert message.endswith("Here: --data /that/folder.")


def test_fashion_mnist_reads_the_folder_given_or_stops(tmp_path, monkeypatch):
    """A folder given that lacks the files is an error: nothing looks elsewhere."""
    monkeypatch.setattr("datasets.load_fashion_mnist", lambda path=None: pytest.fail("looked elsewhere"))
    with pytest.raises(SystemExit) as exit:
        fashion_mnist.main(["--no-torch", "--data", str(tmp_path / "typo"), "--json", str(tmp_path / "r.json")])
    assert str(exit.value.code).startswith(f"--data {tmp_path / 'typo'}: expected the four MNIST IDX files")
    assert "apt-get install dataset-fashion-mnist" in exit.value.code      # and how to get them


def test_threads_beyond_numbas_are_refused(capsys):
    with pytest.raises(SystemExit):
        kernels.main(["--threads", str(harness.numba.config.NUMBA_NUM_THREADS + 1)])
    assert "(the threads numba may use here)" in capsys.readouterr().err


@pytest.mark.parametrize("impl, by_reference", [("fast", False), ("reference", True)])
def test_the_reference_training_step_runs_the_reference_optimizer(impl, by_reference, monkeypatch):
    from benchmarks import recurrent_workloads
    import optim
    calls = []
    original = optim.Adam._update_reference
    monkeypatch.setattr(optim.Adam, "_update_reference",
                        lambda self, *a: calls.append(1) or original(self, *a))
    step = next(w for w in recurrent_workloads.workloads(quick=True) if w.name == recurrent_workloads.TRAIN_STEP)
    step.make(impl)[1]()
    assert bool(calls) == by_reference
