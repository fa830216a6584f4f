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
from pathlib import Path
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

#: The committed results, each written by the run README quotes for it.
RESULTS = Path(__file__).resolve().parent / "results"

#: Options that say where to read or write, not what to run.
LOCATION_OPTIONS = ("out", "json", "data")

TORCH_INSTALL = "pip install torch==2.13.0, see README"


def import_torch():
    """``(torch, None)``, or ``(None, the error)`` when PyTorch does not import: not installed,
    or a broken install (a missing shared library raises OSError, for one)."""
    try:
        import torch
    except Exception as error:       # whatever a broken install raises, the run goes on without
        return None, error
    return torch, None


def try_import_torch():
    """PyTorch if it imports (an optional reference), else None."""
    return import_torch()[0]


def torch_missing_note(error):
    """One line: why PyTorch is absent (``error``, from ``import_torch``) and how to install it."""
    if isinstance(error, ModuleNotFoundError) and error.name == "torch":
        why = "PyTorch is not installed"
    else:
        first_line = (str(error).strip().splitlines() or [""])[0]
        why = f"PyTorch failed to import ({type(error).__name__}: {first_line})"
    return (f"{why}: handprop only, no PyTorch columns (for them, install a CPU build: "
            f"{TORCH_INSTALL})")


def torch_for_run(wanted=True):
    """PyTorch for a run's side-by-side columns, None when not ``wanted`` or not importable --
    then printing ``torch_missing_note``, so that a report without PyTorch says why."""
    if not wanted:
        return None
    torch, error = import_torch()
    if torch is None:
        print(torch_missing_note(error))
    return torch


_THREAD_LIMITS = []        # threadpoolctl limits stay in force while referenced


def _integer_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _integer_at_least(text, 1)


def nonnegative_int(text):
    """argparse type: an integer >= 0 (a seed)."""
    return _integer_at_least(text, 0)


def path_arg(text):
    """argparse type for ``--out`` and ``--json``: a path, never empty (``Path("")`` would be
    the current folder, written into without being asked for)."""
    if not text:
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def check_writable(parser, path, option, folder=False):
    """End with ``parser``'s usage error unless a file can be written at ``path`` (in the
    folder ``path`` with ``folder``). Checked before the run, so that a bad path costs a line,
    not the run's results; creates nothing (the run makes the folders when it writes)."""
    if folder and path.exists() and not path.is_dir():
        parser.error(f"{option} {path}: expected a folder, got a file")
    if not folder and path.is_dir():
        parser.error(f"{option} {path}: expected a file name, got a folder")
    existing = path if folder else path.parent
    while not existing.exists():          # the folders still to be made go in the nearest that is
        existing = existing.parent
    if not existing.is_dir():
        parser.error(f"{option} {path}: cannot write there ({existing} is a file, not a folder)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        parser.error(f"{option} {path}: cannot write there ({e.strerror or e})")


def write_text(path, text):
    """Write ``text`` to ``path``, making its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def is_committed_run(parser, args, options, torch_needed):
    """Whether ``args`` are ``options`` (``{dest: value}``, the options of a run whose results
    are committed) and ``parser``'s defaults for the rest, ``LOCATION_OPTIONS`` aside -- and,
    with ``torch_needed``, PyTorch imports, as it did for that run."""
    same = all(value == options.get(dest, parser.get_default(dest))
               for dest, value in vars(args).items() if dest not in LOCATION_OPTIONS)
    return same and (not torch_needed or try_import_torch() is not None)


def scratch_folder(quick):
    """Where a run not committed writes by default: ``RESULTS/quick`` or ``RESULTS/custom``."""
    return RESULTS / ("quick" if quick else "custom")


def default_folder(parser, args, committed, torch_needed):
    """The output folder of a run: ``RESULTS`` when ``args`` are the options of one of the
    ``committed`` runs (see ``is_committed_run``), else ``scratch_folder`` -- so that a short
    or partial run never replaces a committed result."""
    if any(is_committed_run(parser, args, options, torch_needed) for options in committed):
        return RESULTS
    return scratch_folder(args.quick)


def default_file(parser, args, committed, name, torch_needed):
    """The results file of a run: the file in ``RESULTS`` whose run had the options ``args``
    have (``committed`` maps each committed file name to those options), else ``name`` in
    ``scratch_folder``."""
    for committed_name, options in committed.items():
        if is_committed_run(parser, args, options, torch_needed):
            return RESULTS / committed_name
    return scratch_folder(args.quick) / name


def command_line(options):
    """``{dest: value}`` as typed, e.g. ``--only conv --threads 2``."""
    return " ".join(f"--{dest.replace('_', '-')}" + ("" if value is True else f" {value}")
                    for dest, value in options.items()) or "the run without options"


def destination_help(committed_runs):
    """The end of the ``--out`` or ``--json`` help: where a run writes by default.
    ``committed_runs`` says which runs' results are committed, with which options."""
    return (f"(default: benchmarks/results/ only for the runs committed there, with PyTorch "
            f"importable if they timed it: {committed_runs}; "
            "benchmarks/results/quick/ with --quick and benchmarks/results/custom/ for any other "
            "run, both ignored by git)")


def add_out_option(parser, committed):
    """``--out``, the output folder; its help names the ``committed`` runs (see
    ``default_folder``), the ones that write to ``benchmarks/results/`` by default."""
    runs = "; ".join(command_line(options) for options in committed)
    parser.add_argument("--out", type=path_arg, help="output folder " + destination_help(runs))


def resolve_out(parser, args, committed, torch_needed):
    """``args`` with ``out`` set to the folder to write in: as given, else ``default_folder``;
    ends with ``parser``'s usage error when nothing can be written there."""
    args.out = args.out or default_folder(parser, args, committed, torch_needed)
    check_writable(parser, args.out, "--out", folder=True)
    return args


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


def result_name(script, what, threads):
    """The results file name of a run, e.g. ``kernels_conv_2threads.json``."""
    return f"{script}_{what}" + ("" if threads == 1 else f"_{threads}threads") + ".json"


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
    """Rows: workload x implementation, with ms, GFLOP/s and -- when PyTorch was timed -- the
    ratio to PyTorch."""
    with_torch = any(impl == "torch" for _, impl in results)
    lines = ["| workload | impl | forward ms | fwd+bwd ms | fwd+bwd GFLOP/s |"
             + (" fwd+bwd / PyTorch |" if with_torch else ""),
             "|---|---|---:|---:|---:|" + ("---:|" if with_torch else "")]
    for w in workloads:
        torch_t = results.get((w.name, "torch"), {}).get("forward_backward")
        for impl in IMPLS:
            r = results.get((w.name, impl))
            if r is None:
                continue
            fb = r["forward_backward"]
            gflops = 3 * w.flops / fb / 1e9 if w.flops else float("nan")
            line = f"| {w.name} | {impl} | {r['forward'] * 1e3:.2f} | {fb * 1e3:.2f} | {gflops:.1f} |"
            if with_torch:
                line += f" {fb / torch_t:.2f}x |" if torch_t else " n/a |"
            lines.append(line)
    return "\n".join(lines)


def cold_table(workloads, results):
    lines = ["| workload | fast cold (first call) ms | fast warm ms |", "|---|---:|---:|"]
    for w in workloads:
        r = results.get((w.name, "fast"))
        if r:
            lines.append(f"| {w.name} | {r['cold'] * 1e3:.1f} | {r['forward_backward'] * 1e3:.2f} |")
    return "\n".join(lines)
