"""README examples run as tests (constriction's test_docexamples.py in spirit)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first = text[text.index("```"):]
    assert first.split("\n")[1].startswith("make run") and "make test" in first.split("```")[1]
