"""HumanEval(+) items: the model's completion run against the item's tests.

The completion is model-written code, so it runs only where qmo-eval was told it may
(`--allow-code-execution`, which eval Jobs pass: their pod holds no credentials, mounts
no token, has a read-only root and may reach only the two endpoints), and even there in a
child process of its own: an isolated interpreter (`-I`: no site directory, no environment
variables, no current directory on the path), an empty environment, a fresh temporary
directory, no stdin, and limits on CPU seconds, memory, file size and open files, killed at a
wall-clock timeout. Passing means the tests ran to the end (exit status 0).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qmo.evaluator.benchmarks import CodeItem

# Where a completion stops being the function's body (HumanEval's own stop sequences).
STOP = ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(", "\nassert ")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    open_files: int = 64


def body_of(completion: str) -> str:
    """The completion up to the first stop sequence."""
    cut = len(completion)
    for stop in STOP:
        found = completion.find(stop)
        if found != -1:
            cut = min(cut, found)
    return completion[:cut]


def program(item: CodeItem, completion: str) -> str:
    return f"{item.prompt}{body_of(completion)}\n\n{item.test}\n\ncheck({item.entry_point})\n"


# The child sets its own limits before it reads the program (no preexec_fn: the items run
# from a thread pool, where forking into Python code can deadlock).
LAUNCHER = """
import resource, sys
cpu, memory, size, files = (int(v) for v in sys.argv[1:5])
for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory),
                     (resource.RLIMIT_FSIZE, size), (resource.RLIMIT_NOFILE, files),
                     (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value))
with open("program.py", encoding="utf-8") as source:
    code = compile(source.read(), "program.py", "exec")
exec(code, {"__name__": "__main__"})
"""


def passes(item: CodeItem, completion: str, limits: Limits | None = None) -> bool:
    """Whether the completed function passes the item's tests within the limits."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="qmo-code-") as scratch:
        Path(scratch, "program.py").write_text(program(item, completion), encoding="utf-8")
        caps = (limits.cpu_seconds, limits.memory_bytes, limits.file_bytes, limits.open_files)
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", LAUNCHER, *(str(c) for c in caps)],
                cwd=scratch,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=limits.wall_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0
