"""handprop's thread-pool choices (``layers/kernels/__init__.py``), each tested in a fresh
interpreter: numba's threading layer is fixed once per process, and a kernel launched from two
threads at once on the ``workqueue`` layer aborts the whole process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
