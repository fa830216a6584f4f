"""Side-by-side timing: handprop's fast path, its reference path and PyTorch CPU, interleaved
in one run so that machine noise hits every implementation alike.

A workload is a name, its forward FLOPs, and a ``make(impl)`` that returns
``(forward, forward_backward)`` callables for ``impl`` in ``IMPLS`` (or None when that
implementation is not available, e.g. torch not installed). Forward+backward FLOPs are taken
as 3x forward (the backward computes two products of the forward's size).
"""
import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numba
from threadpoolctl import threadpool_limits

IMPLS = ("fast", "reference", "torch")

#: Seconds of rest before each implementation's turn. PyTorch's OpenMP threads (GNU libgomp)
#: spin for several milliseconds after each parallel operation; timed right after PyTorch,
#: handprop's 5x5 convolution forward took 13-14 ms instead of 8-9 on two threads, its second
#: core held by the spin. After the rest every implementation starts with the cores idle,
#: and keeps its own threads' habits while it runs.
SETTLE_S = 0.02


def try_import_torch():
    """PyTorch if importable (an optional reference), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


_THREAD_LIMITS = []        # threadpoolctl limits stay in force while referenced


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def nonnegative_int(text):
    """argparse type: an integer >= 0 (a seed)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def check_writable(parser, path, option, folder=False):
    """End with ``parser``'s usage error unless a file can be written at ``path`` (in the
    folder ``path`` with ``folder``), creating the folders it needs: checked before the run,
    so a bad path costs a line, not the run's results."""
    where = path if folder else path.parent
    try:
        if not folder and path.is_dir():
            raise IsADirectoryError(21, "is a folder, expected a file name")
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where):
            pass
    except OSError as e:
        parser.error(f"{option} {path}: cannot write there ({e.strerror or e})")


def thread_count(text):
    """argparse type for ``--threads``: 1 up to the threads numba may use on this machine
    (every library gets the same count, so none may exceed numba's)."""
    value = positive_int(text)
    if value > numba.config.NUMBA_NUM_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {numba.config.NUMBA_NUM_THREADS} "
                                         f"(the threads numba may use here), got {value}")
    return value


def name_list(choices):
    """argparse type: one or more distinct comma-separated names from ``choices`` (a list)."""
    def parse(text):
        names = [n for n in text.split(",") if n]
        if not names or set(names) - set(choices) or len(set(names)) < len(names):
            raise argparse.ArgumentTypeError(f"expected one or more distinct names from "
                                             f"{','.join(choices)}, got {text!r}")
        return names
    return parse


def limit_threads(n, torch=True):
    """Run BLAS (through threadpoolctl), numba and -- with ``torch`` -- PyTorch on ``n``
    threads (see ``thread_count``). Returns what was set, for the report."""
    numba.set_num_threads(n)          # first: it refuses a count numba cannot run, before any change
    _THREAD_LIMITS.append(threadpool_limits(limits=n))
    info = {"threads": n, "blas": n, "numba": numba.get_num_threads()}
    torch = try_import_torch() if torch else None
    if torch is not None:
        torch.set_num_threads(n)
        info["torch"] = torch.get_num_threads()
    return info


def release_blas_limits():
    """Lift the BLAS limits set by ``limit_threads`` (numba and PyTorch keep their counts)."""
    while _THREAD_LIMITS:
        _THREAD_LIMITS.pop().restore_original_limits()


@dataclass
class Workload:
    name: str
    flops: float
    make: Callable


def result_name(script, what, threads, quick):
    """The default results file of a run, e.g. ``kernels_conv_2threads.json``: runs with other
    settings never overwrite each other's results."""
    return (f"{script}_{what}" + ("" if threads == 1 else f"_{threads}threads")
            + ("_quick" if quick else "") + ".json")


def time_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(workloads, impls=IMPLS, repeats=7, reference_repeats=3):
    """Return ``{(workload, impl): {"cold": s, "forward": s, "forward_backward": s}}``.

    The first forward+backward of each implementation is its cold time (for the fast path:
    including JIT compilation or loading numba's cache); the warm times are medians over
    ``repeats`` rounds in which the implementations take turns, each after ``SETTLE_S`` of rest.
    """
    results = {}
    for w in workloads:
        fns = {impl: w.make(impl) for impl in impls}
        fns = {impl: f for impl, f in fns.items() if f is not None}
        times = {impl: {"forward": [], "forward_backward": []} for impl in fns}
        for impl, (fwd, fwd_bwd) in fns.items():
            results[(w.name, impl)] = {"cold": time_call(fwd_bwd)}
        for r in range(repeats):
            for impl, (fwd, fwd_bwd) in fns.items():
                if impl == "reference" and r >= reference_repeats:
                    continue
                time.sleep(SETTLE_S)
                times[impl]["forward"].append(time_call(fwd))
                times[impl]["forward_backward"].append(time_call(fwd_bwd))
        for impl, t in times.items():
            results[(w.name, impl)].update({k: statistics.median(v) for k, v in t.items()})
    return results


def markdown_table(workloads, results):
    """Rows: workload x implementation, with ms, GFLOP/s and the ratio to PyTorch."""
    lines = ["| workload | impl | forward ms | fwd+bwd ms | fwd+bwd GFLOP/s | fwd+bwd / PyTorch |",
             "|---|---|---:|---:|---:|---:|"]
    for w in workloads:
        torch_t = results.get((w.name, "torch"), {}).get("forward_backward")
        for impl in IMPLS:
            r = results.get((w.name, impl))
            if r is None:
                continue
            fb = r["forward_backward"]
            ratio = f"{fb / torch_t:.2f}x" if torch_t else "n/a"
            gflops = 3 * w.flops / fb / 1e9 if w.flops else float("nan")
            lines.append(f"| {w.name} | {impl} | {r['forward'] * 1e3:.2f} | {fb * 1e3:.2f} | {gflops:.1f} | {ratio} |")
    return "\n".join(lines)


def cold_table(workloads, results):
    lines = ["| workload | fast cold (first call) ms | fast warm ms |", "|---|---:|---:|"]
    for w in workloads:
        r = results.get((w.name, "fast"))
        if r:
            lines.append(f"| {w.name} | {r['cold'] * 1e3:.1f} | {r['forward_backward'] * 1e3:.2f} |")
    return "\n".join(lines)
