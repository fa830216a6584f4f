"""README's examples run as printed, and its result tables are the ones the benchmarks wrote."""
import contextlib
import io
import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS = README.parent / "benchmarks" / "results"
RERUN = ("a full benchmark run replaces the committed results in benchmarks/results/: "
         "`git checkout benchmarks/results` restores them, or update README to the new figures")


def blocks(section):
    """The fenced code blocks (language, text) of the README section titled ``section``."""
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else None]
    return re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S)


def text_between(title, next_title):
    """README's text from heading ``## title`` to heading ``## next_title``."""
    text = README.read_text()
    return text[text.index(f"## {title}"):text.index(f"## {next_title}")]


def test_fifteen_line_example_and_its_gradient_check_run_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    section = blocks("Train a network in 15 lines")
    code, printed = section[0][1], next(text for lang, text in section if lang == "text")
    assert len(code.strip().splitlines()) <= 16
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
    text = out.getvalue()
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", text).group(1))
    assert accuracy >= 0.95
    assert printed.strip() in text                       # the summary table, as shown
    assert (tmp_path / "digits.npz").exists()

    check = blocks("Check the gradients yourself")        # continues the example above
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(check[0][1], "README.md", "exec"), namespace)
    assert namespace["report"].passed

    def columns(table):
        """Each row's tensor, shape, entries checked and result (the errors vary by machine)."""
        rows = [re.match(r"(\S+)\s+(\(.*?\))\s+(\d+)\s.*\s(\w+)$", line.strip())
                for line in table.strip().splitlines()[2:]]
        return [row.groups() for row in rows]
    printed = next(text for lang, text in check if lang == "text")
    assert columns(out.getvalue()) == columns(printed) and len(columns(printed)) == 5


def test_sequence_and_look_inside_snippets_run_as_printed():
    code = [text for section in ("The layers", "Look inside backprop")
            for lang, text in blocks(section) if lang == "python"]
    assert len(code) == 2
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for text in code:                                # the second goes on with the first's lstm
            exec(compile(text, "README.md", "exec"), namespace)
    lstm = namespace["lstm"]
    assert lstm.intermediates["f_l0"].shape == (4, 10, 16)
    assert lstm.intermediate_grads["c_l0"].shape == (4, 10, 16)


def test_result_tables_are_the_ones_the_benchmarks_wrote():
    written = {line for md in RESULTS.glob("*.md") for line in md.read_text().splitlines()}
    rows = [line for line in text_between("Results", "Speed: kernels").splitlines()
            if line.startswith("|")]
    assert len(rows) > 30
    assert [row for row in rows if row not in written] == [], RERUN


def test_kernel_table_is_the_committed_measurements():
    """Each row: fast, reference and PyTorch ms and their ratio on one thread, then fast and
    PyTorch ms and their ratio on two, from ``kernels_{conv,recurrent}[_2threads].json``."""
    def times(suffix):
        results = [r for family in ("conv", "recurrent")
                   for r in json.loads((RESULTS / f"kernels_{family}{suffix}.json").read_text())["results"]]
        return {(r["workload"], r["impl"]): r["forward_backward"] * 1e3 for r in results}
    one, two = times(""), times("_2threads")
    rows = re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+) \| "
                      r"([\d.]+) \| ([\d.]+)x \|", text_between("Speed: kernels", "Train a network"), re.M)
    assert len(rows) == 11
    for name, *shown in rows:
        fast, reference, torch = one[name, "fast"], one[name, "reference"], one[name, "torch"]
        fast2, torch2 = two[name, "fast"], two[name, "torch"]
        expected = [fast, reference, torch, fast / torch, fast2, torch2, fast2 / torch2]
        assert shown == [f"{v:.2f}" for v in expected], f"{name}: {RERUN}"
