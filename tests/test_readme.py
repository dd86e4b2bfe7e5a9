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


def test_readme_numbers_are_the_benchmarks_output():
    """Every results block of the README is exactly a file the benchmark scripts wrote."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme", README.parent / "benchmarks" / "readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = README.read_text()
    assert mod.BLOCK.search(text), "README has no results block"
    assert mod.splice(text, README.parent / "benchmarks" / "results") == text, "run python benchmarks/readme.py"
