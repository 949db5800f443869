#!/usr/bin/env python
"""Time the parsers on hostile hub text (the cases of docs/security.md), outside a crawl.

Each case is built here and parsed once; the tests assert the same bounds without timing
(tests/test_card.py, tests/test_safe_yaml.py). Compare one version of the code with another::

    .venv/bin/python scripts/bench_hostile_text.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def laughs(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def main() -> int:
    from ptmspiders.hub_answers import BadResponse
    from ptmspiders.parsers.hf_card import parse_card
    from ptmspiders.parsers.safe_yaml import load_yaml

    def yaml_case(text: str) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return load_yaml(text)
            except BadResponse as exc:
                return exc.reason
        return run

    cases: list[tuple[str, int, Callable[[], Any]]] = []

    def card(name: str, text: str) -> None:
        cases.append((name, len(text), lambda: parse_card(text)))

    card("card: 30,000 empty '## Evaluation' headings",
         "---\nlicense: mit\n---\n" + ("## Evaluation\n" + "\n" * 10) * 30_000)
    card("card: a heading line with 20,000 spaces", "# a" + " " * 20_000 + "b\n")
    card("card: 50,000 unclosed '<!--' in a section", "## Evaluation\n" + "<!--" * 50_000)
    card("card: billion-laughs front matter", f"---\n{laughs(9)}---\n# Model\n")
    for levels in (6, 9):
        text = laughs(levels)
        cases.append((f"yaml: billion laughs, {levels} levels", len(text), yaml_case(text)))
    deep = "a: " + "[" * 900 + "]" * 900
    cases.append(("yaml: 900 nested flow sequences", len(deep), yaml_case(deep)))

    width = max(len(name) for name, _, _ in cases) + 2
    for name, size, run in cases:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
        outcome = result if isinstance(result, str) else "parsed"
        print(f"{name:<{width}}{size:>9,} chars {seconds:8.3f} s  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
