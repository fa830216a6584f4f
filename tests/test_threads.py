"""handprop's thread-pool choices (``layers/kernels/__init__.py``). The threading layer's are
tested in a fresh interpreter: numba's threading layer is fixed once per process, and a kernel
launched from two threads at once on the ``workqueue`` layer aborts the whole process."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numba
import pytest
import threadpoolctl

from layers.kernels import share_chunks

ROOT = Path(__file__).resolve().parent.parent

# Convolutions and pools, forward and backward, on maps large enough for the parallel kernels,
# run in three Python threads at once; each thread's results must be the same bits as a run
# on the main thread alone.
CONCURRENT = """
import threading
import numpy as np
import layers

x = np.random.default_rng(0).standard_normal((16, 8, 32, 32)).astype(np.float32)

def run(results, index):
    out = []
    for make in (lambda: layers.Conv2D(8, 8, 3, padding=1, rng=np.random.default_rng(1)),
                 lambda: layers.MaxPool2D(2), lambda: layers.AvgPool2D(2)):
        layer = make()
        for _ in range(10):
            y = layer(x)
            out = [y, layer.backward(np.cos(y))]
    results[index] = out

alone = [None]
run(alone, 0)
results = [None] * 3
threads = [threading.Thread(target=run, args=(results, i)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert all(all(np.array_equal(a, b) for a, b in zip(r, alone[0])) for r in results)
print("same")
"""


def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          timeout=600)


@pytest.mark.parametrize("env,before,expected", [
    ({}, "", "workqueue"),
    ({"NUMBA_THREADING_LAYER": "omp"}, "", "omp"),
    ({}, "numba.config.THREADING_LAYER = 'omp'; ", "omp"),
])
def test_layers_pick_the_workqueue_layer_unless_the_program_chose(env, before, expected):
    done = run_python(f"import numba; {before}import layers; print(numba.config.THREADING_LAYER)", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [expected]


def test_parallel_kernels_called_from_several_python_threads_take_turns():
    done = run_python(CONCURRENT, NUMBA_NUM_THREADS="2", NUMBA_THREADING_LAYER="workqueue")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["same"]


def _blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def test_share_chunks_runs_one_call_per_thread_at_once_with_blas_on_one_thread(numba_threads):
    numba_threads(2)
    before = _blas_threads()
    both_started = threading.Barrier(2, timeout=30)     # broken unless the two calls overlap

    def work(t, chunks):
        both_started.wait()
        if t == 0:
            time.sleep(0.2)                                 # finishes last, still comes first
        return t, chunks, threading.get_ident(), _blas_threads(), numba.get_num_threads()

    results = share_chunks(work, ["a", "b", "c", "d", "e"])
    assert [r[:2] for r in results] == [(0, ["a", "c", "e"]), (1, ["b", "d"])]
    assert results[0][2] == threading.get_ident() != results[1][2]     # the first on the caller
    assert all(set(r[3]) <= {1} and r[4] == 1 for r in results)
    assert _blas_threads() == before and numba.get_num_threads() == 2   # the caller's, back


def test_share_chunks_inside_share_chunks_runs_on_the_calling_thread(numba_threads):
    numba_threads(2)
    def inner(t, chunks):
        return threading.get_ident()

    def outer(t, chunks):
        return share_chunks(inner, chunks) == [threading.get_ident()]

    assert share_chunks(outer, [0, 1, 2, 3]) == [True, True]


def test_share_chunks_with_one_thread_or_one_chunk_calls_on_the_caller(numba_threads):
    numba_threads(2)
    def work(t, chunks):
        return t, chunks, threading.get_ident()

    assert share_chunks(work, ["a"]) == [(0, ["a"], threading.get_ident())]
    numba.set_num_threads(1)
    assert share_chunks(work, ["a", "b"]) == [(0, ["a", "b"], threading.get_ident())]


def test_share_chunks_raises_after_every_call_ended(numba_threads):
    numba_threads(2)
    before, finished = _blas_threads(), []

    def work(t, chunks):
        if t == 0:
            raise ValueError("chunk failed")
        time.sleep(0.2)
        finished.append(t)

    with pytest.raises(ValueError, match="chunk failed"):
        share_chunks(work, [0, 1])
    assert finished == [1]
    assert _blas_threads() == before


def test_share_chunks_waits_for_every_call_when_interrupted(numba_threads):
    numba_threads(2)
    before, finished = _blas_threads(), []

    def work(t, chunks):
        time.sleep(0.3)
        finished.append(t)

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            share_chunks(work, [0, 1])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert finished == [1]          # the caller's own call was the one interrupted
    assert _blas_threads() == before


# A forked child, and a pool shut down as at interpreter exit: the calls still run.
AFTER_FORK_AND_SHUTDOWN = """
import os, signal
import numba
import layers.kernels as k
numba.set_num_threads(2)
work = lambda t, chunks: (t, chunks)
expected = [(0, [0, 2]), (1, [1])]
assert k.share_chunks(work, [0, 1, 2]) == expected       # the parent's pool now exists
pid = os.fork()
if pid == 0:
    signal.alarm(30)                                     # a child that hangs dies instead
    numba.set_num_threads(2)
    os._exit(0 if k.share_chunks(work, [0, 1, 2]) == expected else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
k._executor.shutdown()
assert k.share_chunks(work, [0, 1, 2]) == expected
signal.alarm(60)                                         # a part left to the caller runs as in the pool:
nested = lambda t, chunks: (t, numba.get_num_threads(), k.share_chunks(work, [0, 1, 2]))
assert k.share_chunks(nested, [0, 1]) == [(t, 1, [(0, [0, 1, 2])]) for t in (0, 1)]   # no second lock
print("ran")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_share_chunks_after_fork_and_after_its_pool_shut_down():
    done = run_python(AFTER_FORK_AND_SHUTDOWN, NUMBA_NUM_THREADS="2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran"]


# A child forked while another thread holds the kernels' launch lock and a BLAS limit (as a
# thread inside a max-pool or a convolution would) gets a free lock and its BLAS threads back.
FORK_WHILE_BUSY = """
import os, signal
import numpy as np
import threadpoolctl
import layers
import layers.kernels as k

blas = lambda: {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
before = blas()
limit = threadpoolctl.ThreadpoolController().limit(limits=1, user_api="blas")
limit.__enter__()
k._blas_limit = limit
k._launch_lock.acquire()
pid = os.fork()
if pid == 0:
    signal.alarm(60)                                     # a child that hangs dies instead
    y = layers.MaxPool2D(2)(np.ones((1, 1, 4, 4), np.float32))
    os._exit(0 if y.shape == (1, 1, 2, 2) and blas() == before else 1)
_, status = os.waitpid(pid, 0)
k._launch_lock.release()
limit.__exit__(None, None, None)
print(os.waitstatus_to_exitcode(status), blas() == before)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_thread_runs_a_kernel_works():
    done = run_python(FORK_WHILE_BUSY, NUMBA_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]


def test_a_module_running_on_another_thread_refuses_a_second_call():
    import numpy as np
    import layers
    import nn

    inside, release = threading.Event(), threading.Event()

    class Slow(layers.Tanh):
        def forward(self, x):
            inside.set()
            release.wait(30)
            return super().forward(x)

    layer, x = Slow(), np.ones((2, 3), np.float32)
    worker = threading.Thread(target=layer, args=(x,))
    worker.start()
    inside.wait(30)
    try:
        with pytest.raises(RuntimeError, match="Slow.forward: this Slow is running on another thread"):
            layer(x)
    finally:
        release.set()
        worker.join()
    y = layer(x)                                         # free again, and its super() call works
    assert layer.backward(np.ones_like(y)).shape == (2, 3)
    other = threading.Thread(target=lambda: results.append(nn.reference_enabled()))
    results = []
    with nn.use_reference():                             # the switch is this thread's
        other.start()
        other.join()
        assert nn.reference_enabled()
    assert results == [False] and not nn.reference_enabled()


def test_a_refused_backward_leaves_the_running_threads_record_alone():
    import numpy as np
    import layers

    inside, release = threading.Event(), threading.Event()

    class SlowBackward(layers.Dense):
        def backward(self, dz):
            dx = super().backward(dz)
            inside.set()
            release.wait(30)
            return dx

    layer = SlowBackward(3, 2, rng=0).record_intermediates()
    y = layer(np.ones((2, 3), np.float32))
    worker = threading.Thread(target=layer.backward, args=(np.ones_like(y),))
    worker.start()
    inside.wait(30)
    try:
        with pytest.raises(RuntimeError, match="SlowBackward.backward: this SlowBackward is running on another"):
            layer.backward(np.ones_like(y))
        assert set(layer.intermediate_grads) == {"z"}      # the worker's record, untouched
    finally:
        release.set()
        worker.join()
    assert set(layer.intermediate_grads) == {"z"}


def test_backward_after_a_forward_that_failed_midway_refuses(monkeypatch):
    import numpy as np
    import layers

    conv, x = layers.Conv2D(1, 2, 3), np.ones((2, 1, 5, 5), np.float32)
    y = conv(x)

    def out_of_memory(*args):
        raise MemoryError
    monkeypatch.setattr(layers.kernels.conv, "im2col", out_of_memory)
    with pytest.raises(MemoryError):
        conv(x)
    with pytest.raises(ValueError, match="Conv2D.backward called before forward .or after a forward that failed"):
        conv.backward(np.ones_like(y))
