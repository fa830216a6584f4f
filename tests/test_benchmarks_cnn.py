"""Smoke tests of the CNN benchmarks: ``benchmarks.kernels`` and ``benchmarks.fashion_mnist``
in quick mode (tiny shapes, one step), and the equivalence of the PyTorch twins they time."""
import json
import sys

import numpy as np
import pytest

import nn
from benchmarks import conv_workloads, fashion_mnist, harness, kernels


def test_kernels_quick(tmp_path, capsys):
    path = tmp_path / "kernels.json"
    kernels.main(["--quick", "--only", "conv", "--no-jit-timing", "--json", str(path)])
    data = json.loads(path.read_text())
    names = {w.name for w in conv_workloads.workloads(quick=True)}
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


def test_result_names_keep_thread_counts_apart():
    assert harness.result_name("kernels", "conv", 1) == "kernels_conv.json"
    assert harness.result_name("kernels", "recurrent", 2) == "kernels_recurrent_2threads.json"


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--epochs", "2.5"], "argument --epochs: expected an integer >= 1, got '2.5'"),
    (["--train-size", "-5"], "argument --train-size: expected an integer >= 1, got '-5'"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--seed", "abc"], "argument --seed: expected an integer >= 0, got 'abc'"),
    (["--json", ""], "argument --json: expected a path, got ''"),
    (["--data", "/etc/passwd"], "--data /etc/passwd: expected the folder of the four IDX files, got a file"),
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
    assert f"--json {tmp_path}: expected a file name, got a folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        main(["--quick", "--json", str(blocker / "sub" / "r.json")])   # a folder that cannot be made
    assert f"cannot write there ({blocker} is a file, not a folder)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--quick", "--json", ""])
    assert "argument --json: expected a path, got ''" in capsys.readouterr().err


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
    name = recurrent_workloads.train_step_name(recurrent_workloads.QUICK_TRAIN_STEP_SHAPE)
    step = next(w for w in recurrent_workloads.workloads(quick=True) if w.name == name)
    step.make(impl)[1]()
    assert bool(calls) == by_reference


# ----------------------------------------------------------------------------- where runs write

def _installed(monkeypatch, present):
    """PyTorch importable (a stand-in module) or absent, whatever this machine has."""
    absent = ModuleNotFoundError("No module named 'torch'", name="torch")
    monkeypatch.setattr(harness, "import_torch", lambda: (object(), None) if present else (None, absent))


@pytest.mark.parametrize("main, argv, destination", [
    (kernels, ["--only", "conv"], "kernels_conv.json"),
    (kernels, ["--only", "recurrent"], "kernels_recurrent.json"),
    (kernels, ["--only", "conv", "--no-jit-timing"], "custom/kernels_conv.json"),
    (kernels, [], "custom/kernels_all.json"),
    (kernels, ["--quick", "--only", "conv"], "quick/kernels_conv.json"),
    (fashion_mnist, ["--epochs", "1"], "fashion_mnist_cnn.json"),
    (fashion_mnist, ["--epochs", "6"], "fashion_mnist_cnn_6epochs.json"),
    (fashion_mnist, ["--model", "lstm", "--epochs", "20"], "fashion_mnist_lstm.json"),
    (fashion_mnist, ["--epochs", "1", "--data", "/tmp"], "fashion_mnist_cnn.json"),   # where, not what
    (fashion_mnist, ["--epochs", "1", "--train-size", "128", "--no-torch"], "custom/fashion_mnist_cnn.json"),
    (fashion_mnist, ["--epochs", "1", "--seed", "1"], "custom/fashion_mnist_cnn.json"),
    (fashion_mnist, ["--model", "lstm", "--epochs", "2"], "custom/fashion_mnist_lstm.json"),
    (fashion_mnist, [], "custom/fashion_mnist_cnn.json"),                   # 3 epochs: none committed
    (fashion_mnist, ["--quick"], "quick/fashion_mnist_cnn.json"),
])
def test_only_a_committed_runs_options_write_to_its_committed_file(main, argv, destination, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    _installed(monkeypatch, True)
    assert main.parse_args(argv).json == tmp_path / "results" / destination
    assert not (tmp_path / "results").exists()                  # choosing creates nothing


def test_without_torch_the_committed_options_write_to_the_custom_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    _installed(monkeypatch, False)
    assert kernels.parse_args(["--only", "conv"]).json == tmp_path / "custom" / "kernels_conv.json"
    assert fashion_mnist.parse_args(["--epochs", "1"]).json == tmp_path / "custom" / "fashion_mnist_cnn.json"


@pytest.mark.parametrize("module, prefix", [(kernels, "kernels_"), (fashion_mnist, "fashion_mnist_")])
def test_the_committed_runs_are_the_files_committed(module, prefix):
    assert set(module.COMMITTED) == {p.name for p in harness.RESULTS.glob(f"{prefix}*.json")}


def test_a_refused_json_path_creates_no_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fashion_mnist.main(["--quick", "--json", str(tmp_path / "new" / "sub" / "r.txt")])
    assert "expected a file name ending in .json" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- without PyTorch

def test_without_torch_kernels_say_so_once_and_claim_no_pytorch_columns(tmp_path, monkeypatch, capsys):
    _installed(monkeypatch, False)
    kernels.main(["--quick", "--only", "recurrent", "--no-jit-timing", "--json", str(tmp_path / "k.json")])
    out = capsys.readouterr().out
    assert out.count("PyTorch is not installed") == 1 and "pip install torch==2.13.0" in out
    header = out.splitlines()[1]
    assert header.startswith("5 workloads") and "numba; no PyTorch" in header
    assert "| workload | impl | forward ms | fwd+bwd ms | fwd+bwd GFLOP/s |\n" in out     # no ratio column
    assert "n/a" not in out


def test_the_fashion_mnist_table_without_torch_has_handprop_columns_only():
    results = {"handprop": {"seconds": [2.0], "test_accuracy": [0.5]}}
    assert fashion_mnist.table(results).splitlines()[::2] == ["| epoch | handprop s | handprop test acc |",
                                                               "| 1 | 2.0 | 0.5000 |"]
    results["torch"] = {"seconds": [4.0], "test_accuracy": [0.25]}
    assert fashion_mnist.table(results).endswith("| 1 | 2.0 | 0.5000 | 4.0 | 0.2500 | 0.50x |")


def test_a_broken_torch_install_counts_as_absent_with_a_one_line_note(monkeypatch, capsys):
    class BrokenInstall:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                raise OSError("libtorch_cpu.so: cannot open shared object file\nmore detail")

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenInstall()] + sys.meta_path)
    assert harness.try_import_torch() is None
    assert harness.torch_for_run() is None
    assert capsys.readouterr().out == ("PyTorch failed to import (OSError: libtorch_cpu.so: cannot open "
                                       "shared object file): handprop only, no PyTorch columns (for them, "
                                       "install a CPU build: pip install torch==2.13.0, see README)\n")
    assert harness.torch_for_run(wanted=False) is None and capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- workload names

def test_workload_names_describe_the_shapes_run():
    full = [w.name for w in kernels.collect()]
    committed = [r["workload"] for family in ("conv", "recurrent")
                 for r in json.loads((harness.RESULTS / f"kernels_{family}.json").read_text())["results"]]
    assert full == list(dict.fromkeys(committed))          # README's rows keep their names
    quick = [w.name for w in kernels.collect(quick=True)]
    assert quick[0] == "Conv2D 1->32 8x8 k3 p1, N=2" and quick[3] == "MaxPool2D 2x2 on (2, 4, 8, 8)"
    assert quick[5] == "Conv1D 32->64 L=16 k5 p2, N=2" and quick[6] == "LSTM B2 T3 I28 H128"
    assert quick[-1] == "BiGRU(1->6)+Dense(12->10) B2 T5, Adam step"
    assert not set(quick) & set(full)
