"""Run test code in a fresh interpreter, so that a crash or a hang fails one test.

A segfault, an abort from heap corruption or a kernel that never returns would
otherwise take pytest down with it (or stall the suite); here they become an
ordinary assertion failure naming the code and the signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap


def run_isolated(code: str, *, timeout: float = 60.0) -> str:
    """Run ``code`` (with ``np``, ``cnnkit`` and ``ops`` imported) in a new process.

    Returns its standard output. Fails when the process is killed by a signal,
    exits with a non-zero status, or outlives ``timeout`` seconds.
    """
    program = "import numpy as np\nimport cnnkit\nfrom cnnkit import ops, reference\n"
    program += textwrap.dedent(code)
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"no result within {timeout} s from:\n{program}") from e
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise AssertionError(f"killed by {name}:\n{program}\n--- stderr:\n{done.stderr[-3000:]}")
    if done.returncode != 0:
        raise AssertionError(f"exit status {done.returncode}:\n{program}\n{done.stderr[-3000:]}")
    return done.stdout


def run_in_forked_child(setup: str, child: str, *, timeout: float = 60.0) -> str:
    """Run ``setup`` in a fresh interpreter, then ``os.fork()`` and run ``child`` in the
    forked process (which inherits what ``setup`` started: threads, caches, locks).

    Fails like :func:`run_isolated` when the child raises, dies or outlives ``timeout``
    seconds (the child is then killed, so a hang leaves no process behind).
    """
    program = textwrap.dedent(setup) + textwrap.dedent(
        f"""
        import os, signal, time, traceback, warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive
            pid = os.fork()
        if pid == 0:
            try:
                exec({textwrap.dedent(child)!r})
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        deadline = time.monotonic() + {timeout}
        while not (waited := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise SystemExit("the forked child did not finish within {timeout} s")
            time.sleep(0.05)
        code = os.waitstatus_to_exitcode(waited[1])
        if code != 0:
            raise SystemExit(f"the forked child ended with status {{code}}")
        """
    )
    return run_isolated(program, timeout=timeout + 30)
