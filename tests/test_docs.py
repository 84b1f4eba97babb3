"""The docs run as written: the README's HN-3 example is the committed script and its output the
committed output, and every code block of docs/guide/ runs and prints what its page shows."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _block_after(text: str, marker: str) -> str:
    match = re.search(re.escape(marker) + r"\n```[a-z]*\n(.*?)```", text, re.S)
    assert match, marker
    return match.group(1)


def test_readme_example_and_its_output_are_the_committed_files():
    readme = (ROOT / "README.md").read_text()
    for kind in ("example", "output"):
        for path in re.findall(rf"<!-- {kind}: (\S+) -->", readme):
            assert _block_after(readme, f"<!-- {kind}: {path} -->") == (ROOT / path).read_text()
    assert "<!-- example: docs/examples/hn3_synthetic.py -->" in readme


GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))


def python_blocks(text: str) -> list[tuple[str, str | None]]:
    """Each ```python block of a page, with the block marked ``<!-- output -->`` that follows
    it before the next python block (what the page says it prints), or None."""
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        after = re.search(r"```python\n|<!-- output -->\n```[a-z]*\n(.*?)```",
                          text[match.end():], re.S)
        shown = after.group(1) if after and after.group(0).startswith("<!--") else None
        blocks.append((match.group(1), shown))
    return blocks


def test_python_blocks_pair_with_the_output_they_show():
    page = ("```python\nprint(1)\n```\ntext\n<!-- output -->\n```\n1\n```\n"
            "```python\nx = 2\n```\n```python\nprint(3)\n```\n<!-- output -->\n```\n3\n```\n")
    assert python_blocks(page) == [("print(1)\n", "1\n"), ("x = 2\n", None), ("print(3)\n", "3\n")]


BLOCKS = [(page.name, i) for page in GUIDE for i in range(len(python_blocks(page.read_text())))]


@pytest.mark.parametrize("page,index", BLOCKS, ids=[f"{p}-{i}" for p, i in BLOCKS])
def test_every_guide_code_block_runs_and_prints_what_the_page_shows(page, index, tmp_path):
    code, shown = python_blocks((ROOT / "docs" / "guide" / page).read_text())[index]
    # As a reader runs it: without the tests' XLA optimisation level (tests/conftest.py), which
    # moves float rounding.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    if shown is not None:
        assert done.stdout == shown


def test_the_guide_has_code_and_every_page_is_linked_from_the_readme():
    assert len(BLOCKS) >= 5
    readme = (ROOT / "README.md").read_text()
    for page in GUIDE:
        assert f"docs/guide/{page.name}" in readme, page.name
