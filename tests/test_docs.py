"""The README's HN-3 example is the committed script, and its output the committed output."""

import pathlib
import re

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
