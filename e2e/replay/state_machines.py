"""Run each state machine of tests/unit/test_serving_invariants.py at its CI settings, without
the shrink phase (the example that fails is found in the generate phase either way), and print
per machine whether it held or what it found. Used by e2e/replay/on-commit.sh."""

from __future__ import annotations

import time
import unittest

from hypothesis import Phase, settings

import tests.unit.test_serving_invariants as machines


def finding(text: str) -> str:
    """The failure's own line of a traceback (an assertion, a Retry, an error)."""
    lines = [
        line
        for line in text.splitlines()
        if ("Error" in line or "Retry" in line)
        and ":" in line
        and not line.startswith((" ", "state"))
    ]
    return lines[-1][:230] if lines else text[-300:]


def main() -> None:
    for name in sorted(n for n in dir(machines) if n.startswith("test_")):
        case = getattr(machines, name)
        case.settings = settings(
            case.settings, phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=False
        )
        started = time.time()
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
        took = time.time() - started
        problems = result.failures + result.errors
        if not problems:
            print(f"{name}: held ({took:.0f} s)", flush=True)
            continue
        text = problems[0][1]
        steps = [s for s in text.splitlines() if s.startswith("state.") and "()" not in s]
        print(f"{name}: FOUND in {took:.0f} s: {finding(text)}")
        print("    steps: " + " -> ".join(s.removeprefix("state.")[:70] for s in steps), flush=True)


if __name__ == "__main__":
    main()
