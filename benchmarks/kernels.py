"""Kernel benchmark: handprop's fast path vs its reference path vs PyTorch CPU, per layer.

    python -m benchmarks.kernels [--quick] [--only conv|recurrent] [--threads N] [--no-jit-timing]
                                 [--json PATH]

Collects the workloads of ``benchmarks.conv_workloads`` and ``benchmarks.recurrent_workloads``
(each module's ``workloads()``), times them side by side with ``benchmarks.harness`` and prints
two markdown tables: warm times (ms, GFLOP/s, ratio to PyTorch) and first-call times. It then
times, in fresh interpreters, importing ``layers`` and the first call of every convolution and
pooling kernel -- with an empty numba cache (compiling) and then with it filled, three times
from a new cache each (medians and the range printed).
``--quick`` runs tiny shapes once: a smoke test, not a measurement. Without PyTorch the
tables have no PyTorch rows or ratios (the run says so).

Writes JSON to ``--json``; by default to ``benchmarks/results/`` only with the options of a run
committed there (``COMMITTED``: ``--only conv`` or ``--only recurrent``, on one thread or with
``--threads 2``, PyTorch installed), so that no other run replaces those results: a ``--quick``
run writes to ``benchmarks/results/quick/``, any other to ``benchmarks/results/custom/``.

The thread pools' settings (numba's ``workqueue`` layer, OpenBLAS's threads sleeping at once)
are printed with the tables; why they matter: ``layers/kernels/__init__.py``. The
implementations take turns after a short rest (``harness.SETTLE_S``), so that none is timed
while another's idle threads still spin.
"""
import os

import argparse
import importlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numba

from benchmarks import harness

FAMILIES = {"conv": "benchmarks.conv_workloads", "recurrent": "benchmarks.recurrent_workloads"}
ROOT = Path(__file__).resolve().parent.parent
#: The committed results and the options of the runs that wrote them (README's kernel table).
COMMITTED = {"kernels_conv.json": {"only": "conv"},
             "kernels_conv_2threads.json": {"only": "conv", "threads": 2},
             "kernels_recurrent.json": {"only": "recurrent"},
             "kernels_recurrent_2threads.json": {"only": "recurrent", "threads": 2}}

# Imports ``layers`` and runs every convolution and pooling kernel once (float32): on a small
# map, and on a sample large enough that its im2col is split among threads.
_JIT_PROBE = """
import json, time
t0 = time.perf_counter()
import numpy as np
import layers
t1 = time.perf_counter()
rng = np.random.default_rng(0)
for shape in ((2, 2, 6, 6), (1, 8, 256, 256)):      # cols of the second: 4.7M elements
    x = rng.standard_normal(shape).astype(np.float32)
    for layer in (layers.Conv2D(shape[1], 2, 3, padding=1), layers.MaxPool2D(2), layers.AvgPool2D(2)):
        y = layer(x)
        layer.backward(np.ones_like(y))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_calls_s": t2 - t1}))
"""


def _thread_settings():
    return f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '')}, numba threading layer {numba.threading_layer()}"


def collect(only=None, quick=False):
    """The workloads of the requested families (all by default)."""
    return [w for family, module_name in FAMILIES.items() if only in (None, family)
            for w in importlib.import_module(module_name).workloads(quick=quick)]


def jit_times(repeats=3):
    """``{"cold": [...], "cached": [...]}``, one ``{"import_s", "first_calls_s"}`` per repeat:
    import and first-call seconds in a fresh interpreter, with an empty numba cache and then
    with the cache it left. Each repeat starts from a new empty cache (compile times move with
    the machine's load as much as kernel times do)."""
    out = {"cold": [], "cached": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
            for label in ("cold", "cached"):
                done = subprocess.run([sys.executable, "-c", _JIT_PROBE], env=env, cwd=ROOT,
                                      capture_output=True, text=True, check=True)
                out[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def jit_table(times):
    """Medians over the repeats, and the range of the totals."""
    lines = ["| numba cache | import layers s | first call of all conv/pool kernels s | total s "
             "(median) | total s (min-max) |", "|---|---:|---:|---:|---:|"]
    for label, runs in times.items():
        totals = [t["import_s"] + t["first_calls_s"] for t in runs]
        median = lambda key: statistics.median(t[key] for t in runs)
        lines.append(f"| {label} | {median('import_s'):.2f} | {median('first_calls_s'):.2f} | "
                     f"{statistics.median(totals):.2f} | {min(totals):.2f}-{max(totals):.2f} |")
    return "\n".join(lines)


def to_json(workloads, results, jit, quick):
    rows = []
    for w in workloads:
        torch_fb = results.get((w.name, "torch"), {}).get("forward_backward")
        for impl in harness.IMPLS:
            r = results.get((w.name, impl))
            if r is not None:
                rows.append({"workload": w.name, "impl": impl, "forward_flops": w.flops, **r,
                             "ratio_to_torch": r["forward_backward"] / torch_fb if torch_fb else None})
    return {"quick": quick, "threads": numba.get_num_threads(), "thread_settings": _thread_settings(),
            "python": platform.python_version(),
            "machine": platform.machine(), "results": rows, "jit": jit}


def parse_args(argv):
    """The options, with ``json`` the path to write (see the module's docstring for the default)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one repeat (smoke test)")
    parser.add_argument("--only", choices=sorted(FAMILIES), help="run one family of workloads")
    parser.add_argument("--threads", type=harness.thread_count, default=1,
                        help="threads for BLAS, numba and PyTorch (default 1)")
    parser.add_argument("--no-jit-timing", action="store_true",
                        help="skip timing the cold and cached import + JIT in fresh interpreters")
    committed = ", ".join(f"{name} ({harness.command_line(options)})"
                          for name, options in COMMITTED.items())
    parser.add_argument("--json", type=harness.path_arg,
                        help="where to write the results, by default named "
                             "kernels_{conv,recurrent,all}[_Nthreads].json "
                             + harness.destination_help(committed))
    args = parser.parse_args(argv)
    args.json = args.json or harness.default_file(
        parser, args, COMMITTED, harness.result_name("kernels", args.only or "all", args.threads),
        torch_needed=True)
    harness.check_writable(parser, args.json, "--json")
    return args


def header(n_workloads, threads, with_torch, quick):
    """The line above the tables: what runs, on how many threads, in which libraries."""
    libraries = "numba and PyTorch" if with_torch else "numba; no PyTorch"
    return (f"{n_workloads} workloads, float32, {threads} threads ({libraries}), "
            f"{_thread_settings()}{' -- quick mode' if quick else ''}")


def main(argv=None):
    args = parse_args(argv)
    harness.limit_threads(args.threads)
    torch = harness.torch_for_run()
    workloads = collect(args.only, args.quick)
    print(header(len(workloads), numba.get_num_threads(), torch is not None, args.quick), "\n")
    results = harness.measure(workloads, repeats=1 if args.quick else 7,
                              reference_repeats=1 if args.quick else 3)
    print(harness.markdown_table(workloads, results), "\n")
    print(harness.cold_table(workloads, results), "\n")
    jit = None
    if args.only in (None, "conv") and not args.no_jit_timing:
        jit = jit_times(repeats=1 if args.quick else 3)
        print(jit_table(jit), "\n")
    harness.write_text(args.json, json.dumps(to_json(workloads, results, jit, args.quick), indent=2))
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
