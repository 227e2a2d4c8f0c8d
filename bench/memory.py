"""Peak memory of the convolution cases: cnnkit beside torch.

Usage::

    python bench/memory.py [--filter REGEX] [--markdown FILE]

Each (case, implementation) runs in a fresh Python process: the inputs are made and the call
prepared, the kernel's high-water mark of resident memory is reset (``/proc/self/clear_refs``),
the call runs once on one thread, and the report is the peak resident memory above what the
process held just before the call, minus the output itself. What remains is the workspace:
for cnnkit it must be bounded by a tile, whatever the batch size. Linux only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cases import as_numpy
from cases.conv import CONVS, Conv, forward, training_step

IMPLS = ("cnnkit", "torch")
STEPS = {"forward": forward, "forward+backward": training_step}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_here(index: int, step: str, impl: str) -> dict[str, float]:
    """Peak workspace in MiB of one call, measured in this process."""
    import cnnkit

    cnnkit.set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        if impl == "torch":
            raise
    spec = CONVS[index]
    call = STEPS[step](spec, impl)(spec.inputs())
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    result = as_numpy(call())
    peak = _status_kib("VmHWM")
    output_mib = np.asarray(result).nbytes / 2**20
    return {"workspace": (peak - before) / 1024 - output_mib, "output": output_mib}


def measure(index: int, step: str, impl: str) -> dict[str, float] | str:
    """measure_here in a fresh process, so earlier cases leave no freed pages behind."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import memory; "
        "print(json.dumps(memory.measure_here(int(sys.argv[2]), sys.argv[3], sys.argv[4])))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(index), step, impl],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        return (run.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(run.stdout)


def markdown(rows: Sequence[tuple[Conv, str, dict[str, dict[str, float] | str]]]) -> str:
    lines = [
        "## Peak memory of the convolution cases (`bench/memory.py`, one thread)",
        "",
        "Workspace: the peak resident memory during one call above what the process held",
        "before it, minus the returned array (for forward+backward, the returned dw; y, dx and",
        "db count as workspace there, for both). Each measurement is the first call in a fresh",
        "process, so torch's figures include its one-time initialisation (about 9 MiB, see the",
        "smallest case); cnnkit's include its per-thread tile buffers.",
        "",
        "| case | size | step | cnnkit workspace MiB | torch workspace MiB | output MiB |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for spec, step, results in rows:
        cells = []
        output = ""
        for impl in IMPLS:
            r = results[impl]
            if isinstance(r, str):
                cells.append(f"error: {r}")
            else:
                cells.append(f"{max(r['workspace'], 0.0):.1f}")
                output = f"{r['output']:.1f}"
        size = " x ".join(map(str, spec.shape))
        lines.append(f"| {spec.name} | {size} | {step} | {' | '.join(cells)} | {output} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", help="regex on the case name")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = []
    for index, spec in enumerate(CONVS):
        if args.filter and not re.search(args.filter, spec.name):
            continue
        for step in STEPS:
            results = {impl: measure(index, step, impl) for impl in IMPLS}
            rows.append((spec, step, results))
            print(f"{spec.name} {step}: {results}", file=sys.stderr)
    text = markdown(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
