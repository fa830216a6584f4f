"""The README's guided tour of backpropagation runs, and prints what it says it prints.

The section ``## A guided tour of backpropagation`` is read from README.md; its ```python
blocks run in order in one namespace, and each block's standard output must equal the ```text
block right after it (when there is one), up to trailing whitespace.
"""
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## A guided tour of backpropagation"

FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def tour_section(text, heading=HEADING):
    """The text from ``heading`` to the next level-2 heading (or the end), or None."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("## ") and not lines[i].startswith("###")), len(lines))
    return "".join(lines[start:end])


def snippets(section):
    """``[(code, expected_output_or_None), ...]``: each ```python block with the ```text block
    that follows it, separated by nothing but blank lines."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(section)]
    pairs = []
    for k, (lang, body, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        expected = None
        if k + 1 < len(blocks):
            nxt_lang, nxt_body, nxt_start, _ = blocks[k + 1]
            if nxt_lang == "text" and section[end:nxt_start].strip() == "":
                expected = nxt_body
        pairs.append((body, expected))
    return pairs


def normalise(text):
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def run_tour(section):
    """Run every snippet in one namespace; return ``[(code, expected, printed), ...]``."""
    namespace = {"__name__": "__tour__"}
    results = []
    with np.printoptions():                      # print settings made by the tour end with it
        for k, (code, expected) in enumerate(snippets(section)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<tour snippet {k + 1}>", "exec"), namespace)
            results.append((code, expected, out.getvalue()))
    return results


def test_tour_snippets_print_what_the_readme_shows():
    section = tour_section(README.read_text(encoding="utf-8")) if README.exists() else None
    if section is None:
        pytest.skip(f"README.md has no section {HEADING!r}")
    results = run_tour(section)
    assert results, "the tour has no python snippets"
    for k, (code, expected, printed) in enumerate(results, 1):
        if expected is not None:
            assert normalise(printed) == normalise(expected), (
                f"tour snippet {k} printed something else than the README shows:\n"
                f"--- code ---\n{code}\n--- README ---\n{expected}\n--- printed ---\n{printed}")


def test_snippet_extraction():
    section = (f"{HEADING}\n\nprose\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
               "```python\nx = 2\n```\nmore prose\n```text\nnot this block's\n```\n"
               "### a subsection\n```python\nprint(x)\n```\n## Next section\n```python\nboom\n```\n")
    doc = "# Title\n\n" + section
    found = tour_section(doc)
    assert found.startswith(HEADING) and "boom" not in found
    assert snippets(found) == [("print(1)\n", "1\n"), ("x = 2\n", None), ("print(x)\n", None)]
    assert [printed for _, _, printed in run_tour(found)] == ["1\n", "", "2\n"]
    assert tour_section("# no tour here\n") is None
