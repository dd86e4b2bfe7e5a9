"""Copy benchmark results into README.md between their markers, so that every number in
the README is a script's output:

    <!-- results: compression -->
    ... replaced by benchmarks/results/compression.md ...
    <!-- /results -->

    python benchmarks/readme.py          # after running the benchmarks (`make bench` does both)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", flags=re.S)


def splice(text: str, results: Path) -> str:
    def fill(m: re.Match) -> str:
        src = results / f"{m.group(2)}.md"
        if not src.is_file():
            raise SystemExit(f"{src} is missing: run its benchmark first")
        return m.group(1) + src.read_text() + m.group(4)

    return BLOCK.sub(fill, text)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = splice(text, ROOT / "benchmarks" / "results")
    if new != text:
        readme.write_text(new)
        print("README.md updated")
    else:
        print("README.md already up to date")


if __name__ == "__main__":
    main()
