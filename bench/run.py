"""Benchmark runner: cnnkit against its NumPy reference and its peers.

Usage::

    python bench/run.py [--quick] [--rounds N] [--filter REGEX] [--threads LIST]
                        [--json FILE] [--markdown FILE]
    python bench/run.py --load FILE [FILE ...] --markdown bench/RESULTS.md

Cases come from every module in ``bench/cases/`` (the case API is documented in
``bench/cases/__init__.py``). Each case runs at each thread count (default: 1 and all cores);
every implementation gets a pause (other thread pools stop spinning, see ``Budget``), one
warm-up call, whose result is checked against cnnkit's, then timed calls until the time budget
or the repeat cap is reached. The table reports medians in
milliseconds and the best peer's time divided by cnnkit's (> 1: cnnkit is faster).
``--rounds N`` times every implementation of a case N times in turn and keeps each one's
best round, so a burst of other work on a shared machine skews one round, not the figure.
``--control`` adds a "control" column: a fixed compute-bound cnnkit kernel timed in turn with
each case's implementations (see ``control_call``), so a case's change between thread counts
can be read against the machine's own at that moment.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import math
import os
import pkgutil
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import cases
import numpy as np
from cases import OWN, Call, Case, as_numpy

PEER_MODULES = ("torch", "torchvision", "cv2", "pycocotools", "skimage", "selectivesearch")
SKIPPED = "skipped (too slow)"
BUSY = 0.2  # busy fraction of the cores before a run above which it warns
WARN_BUSY = "warning: the cores are {:.0%} busy: other work skews the timings, multi-threaded most"


@dataclass(frozen=True)
class Budget:
    """How long to time one implementation.

    Timed calls go on until ``seconds`` have passed or ``max_repeats`` calls were made, and at
    least ``min_repeats`` (the first call after the warm-up can be an outlier: the first touch
    of fresh memory is slow in a VM). A warm-up call longer than ``single_call`` seconds is the
    only measurement: one-off costs are negligible next to it, and slow peers (torchvision's
    box_iou at 10,000 x 10,000, OpenCV's NMS at 100,000) would otherwise dominate the run.

    ``rounds``: how many times each implementation of a case is timed, in turn with the
    others (cnnkit, peer, cnnkit, peer, ...); its fastest round's median is reported. On a VM
    whose neighbours come and go, single figures move by 5-10% between runs minutes apart, and
    a slow spell then lands on one implementation's round rather than on its only figure.

    ``pause`` seconds of sleep precede each implementation's warm-up: a thread pool keeps its
    workers spinning for a while after a call (NumPy's OpenBLAS about 0.1 s, libgomp's
    OMP_WAIT_POLICY default a few ms), and spinning workers of the previous implementation
    would share the cores with the next one's and slow it (a 2-thread cnnkit GEMM right after
    a NumPy matmul ran at half speed). The pause lets them go to sleep.
    """

    seconds: float
    min_repeats: int
    max_repeats: int
    single_call: float
    pause: float = 0.25
    rounds: int = 1
    control: bool = False


FULL = Budget(seconds=0.5, min_repeats=3, max_repeats=50, single_call=2.0)
QUICK = Budget(seconds=0.05, min_repeats=1, max_repeats=5, single_call=0.5, pause=0.15)


CONTROL = "control"
NOT_PEERS = (*OWN, CONTROL)


def control_call() -> Call:
    """The ``--control`` kernel: ``ops.matmul`` of two 512 x 512 float32 matrices (about
    2 ms at one thread), compute-bound and splitting evenly between threads, so its
    1-thread / 2-thread time is what a second core gives at that moment. On a VM the second
    vCPU runs slower now and then (its host core is busy); a case timed in such a spell
    scales less, and so does the control beside it."""
    import cnnkit.ops

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((512, 512), dtype=np.float32) for _ in range(2))
    return lambda: cnnkit.ops.matmul(a, b)


@dataclass
class Measurement:
    """One implementation at one thread count."""

    status: str  # "ok", "missing", "error" or SKIPPED
    median_ms: float | None = None
    repeats: int = 0
    note: str = ""  # why missing, the error, or how it disagrees with cnnkit
    agrees: bool | None = None  # None: not compared
    min_ms: float | None = None  # the fastest timed call, for judging noise


@dataclass
class Row:
    """One case at one thread count."""

    module: str
    case: str
    size: str
    dtype: str
    threads: int
    results: dict[str, Measurement] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Best peer time / cnnkit time, or None when either is missing."""
        ours = self.results.get("cnnkit")
        peers = [
            m.median_ms
            for name, m in self.results.items()
            if name not in NOT_PEERS and m.median_ms is not None
        ]
        if ours is None or ours.median_ms is None or not peers:
            return None
        return min(peers) / ours.median_ms


# --- discovery and environment -----------------------------------------------------------


def discover(pattern: str | None) -> list[tuple[str, Case]]:
    """``(module, case)`` for every case in bench/cases/ whose "module/name" matches."""
    regex = re.compile(pattern or "", re.IGNORECASE)
    found = []
    for info in sorted(pkgutil.iter_modules(cases.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module_cases = importlib.import_module(f"cases.{info.name}").cases()
        except Exception as exc:  # one broken case module must not stop the others
            print(f"!! ERROR loading cases/{info.name}.py: {exc!r}", file=sys.stderr)
            continue
        found += [(info.name, c) for c in module_cases if regex.search(f"{info.name}/{c.name}")]
    return found


def optional_module(name: str) -> ModuleType | None:
    """The module, or None when it cannot be imported (missing, or built for another
    version of what it needs: torchvision's PyPI wheel with a CPU-only torch raises
    RuntimeError while registering its operators)."""
    try:
        return importlib.import_module(name)
    except (ImportError, RuntimeError):
        return None


def set_threads(n: int) -> None:
    """Use ``n`` threads in cnnkit and in every importable peer that has a setting.

    NumPy's BLAS is limited too when threadpoolctl is installed.
    """
    import cnnkit

    cnnkit.set_num_threads(n)
    if torch := optional_module("torch"):
        torch.set_num_threads(n)
    if cv2 := optional_module("cv2"):
        cv2.setNumThreads(n)
    if threadpoolctl := optional_module("threadpoolctl"):
        threadpoolctl.threadpool_limits(n)


def all_threads() -> int:
    """The number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    module = optional_module(name)
    if module is None:
        return "missing"
    if hasattr(module, "__version__"):
        return str(module.__version__)
    try:  # pycocotools has no __version__
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The fraction of all cores' time spent busy over the next ``seconds`` (Linux only)."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return 1.0 - (after[0] - before[0]) / (after[1] - before[1])


def machine_info(load_at_start: tuple[float, float, float] | None) -> dict[str, Any]:
    """CPU, cores, versions, SIMD path, date, load: what the numbers depend on."""
    from cnnkit import _core

    return {
        "cpu": _cpu_model(),
        "cores": all_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("cnnkit", "numpy", *PEER_MODULES)},
        "simd": _core.get_isa(),
        "commit": _git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": {"start": load_at_start, "end": load_average()},
    }


# --- measuring ---------------------------------------------------------------------------


def time_call(call: Call, budget: Budget) -> tuple[Measurement, object]:
    """Pause, warm up (returning that result), then time calls until the budget is spent."""
    gc.collect()
    time.sleep(budget.pause)
    start = time.perf_counter()
    result = call()
    warm_up = time.perf_counter() - start
    if warm_up > budget.single_call:
        return Measurement("ok", warm_up * 1e3, 1, min_ms=warm_up * 1e3), result
    times: list[float] = []
    gc.disable()
    try:
        while len(times) < budget.min_repeats or (
            sum(times) < budget.seconds and len(times) < budget.max_repeats
        ):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    median, fastest = statistics.median(times) * 1e3, min(times) * 1e3
    return Measurement("ok", median, len(times), min_ms=fastest), result


def describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def prepare_all(case: Case, inputs: tuple) -> dict[str, Call | Measurement]:
    """Each implementation's timed call, or the Measurement that says why there is none."""
    prepared: dict[str, Call | Measurement] = {}
    for name, prepare in case.impls.items():
        if name in case.too_slow:
            prepared[name] = Measurement(SKIPPED)
            continue
        try:
            prepared[name] = prepare(inputs)
        except ImportError as exc:
            prepared[name] = Measurement("missing", note=str(exc))
        except Exception as exc:
            prepared[name] = Measurement("error", note=describe(exc))
    return prepared


def measure(call: Call | Measurement, budget: Budget) -> tuple[Measurement, object]:
    """Time a prepared call; a call that raises is reported, not propagated."""
    if isinstance(call, Measurement):
        return call, None
    try:
        return time_call(call, budget)
    except Exception as exc:
        return Measurement("error", note=describe(exc)), None


def compare(case: Case, outputs: dict[str, object]) -> dict[str, str | None]:
    """Each other implementation's disagreement with cnnkit (None: agrees)."""
    if "cnnkit" not in outputs:
        return {}
    ours = as_numpy(outputs["cnnkit"])
    verdicts: dict[str, str | None] = {}
    for name, output in outputs.items():
        if name != "cnnkit":
            try:
                verdicts[name] = case.check(ours, as_numpy(output))
            except Exception as exc:
                verdicts[name] = f"check failed: {describe(exc)}"
    return verdicts


def run_case(module: str, case: Case, threads: Sequence[int], budget: Budget) -> list[Row]:
    """The case at every thread count; results are compared at the first one.

    Each thread count prepares the calls anew: a peer may fix its thread count when it is
    set up (an onnxruntime session's ``intra_op_num_threads``), and a call prepared at the
    previous count would time that count instead."""
    inputs = case.inputs()
    verdicts: dict[str, str | None] = {}
    rows = []
    for i, n in enumerate(threads):
        set_threads(n)
        prepared = prepare_all(case, inputs)
        if budget.control:
            prepared[CONTROL] = control_call()
        row = Row(module, case.name, case.size, case.dtype, n)
        outputs = {}
        for round_ in range(budget.rounds):
            for name, call in prepared.items():
                measured, output = measure(call, budget)
                row.results[name] = better_round(row.results.get(name), measured)
                if i == 0 and round_ == 0 and output is not None and name != CONTROL:
                    outputs[name] = output
        if i == 0:
            verdicts = compare(case, outputs)
            del outputs
        for name, verdict in verdicts.items():
            if row.results[name].status == "ok":
                row.results[name].agrees = verdict is None
                row.results[name].note = verdict or ""
        rows.append(row)
    return rows


def better_round(kept: Measurement | None, new: Measurement) -> Measurement:
    """The round to report: the lower median, counting the repeats of both; a round that
    failed is reported, since a failure must not hide behind a good round."""
    if kept is None:
        return new
    if kept.status != "ok" or kept.median_ms is None:
        return kept
    if new.status != "ok" or new.median_ms is None:
        return new
    best = new if new.median_ms < kept.median_ms else kept
    return replace(best, repeats=kept.repeats + new.repeats)


def run(selected: list[tuple[str, Case]], threads: Sequence[int], budget: Budget) -> list[Row]:
    """Every selected case, with progress on stderr."""
    rows: list[Row] = []
    for k, (module, case) in enumerate(selected, 1):
        label = f"{module}/{case.name} {case.size} {case.dtype}"
        print(f"[{k}/{len(selected)}] {label} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows += run_case(module, case, threads, budget)
        print(f" {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return rows


# --- reporting ---------------------------------------------------------------------------


def format_ms(ms: float) -> str:
    """Three significant digits, without exponents: 0.0123, 1.23, 12.3, 1,234."""
    if ms >= 100:
        return f"{ms:,.0f}"
    return f"{ms:.{max(0, 2 - math.floor(math.log10(ms)))}f}" if ms > 0 else "0"


def cell(m: Measurement | None) -> str:
    """One implementation's table cell; a disagreement with cnnkit is marked with '!'."""
    if m is None:
        return "-"
    if m.status != "ok" or m.median_ms is None:
        return m.status
    return format_ms(m.median_ms) + (" !" if m.agrees is False else "")


def verdict(row: Row) -> str:
    """'ok', 'MISMATCH: <names>', 'ERROR: <names>', or '-' when nothing was compared."""
    flagged = {
        "MISMATCH": [name for name, m in row.results.items() if m.agrees is False],
        "ERROR": [name for name, m in row.results.items() if m.status == "error"],
    }
    parts = [f"{kind}: {', '.join(names)}" for kind, names in flagged.items() if names]
    if parts:
        return "; ".join(parts)
    return "ok" if any(m.agrees for m in row.results.values()) else "-"


def implementations(rows: Iterable[Row]) -> list[str]:
    """Column order: cnnkit, reference, then peers in order of first appearance."""
    names = dict.fromkeys(OWN)
    for row in rows:
        names.update(dict.fromkeys(row.results))
    return list(names)


class Table(NamedTuple):
    """Cells shared by the text and Markdown renderings."""

    header: list[str]
    body: list[list[str]]
    left: set[int]  # left-aligned columns; the others hold numbers


def table(rows: Sequence[Row]) -> Table:
    names = implementations(rows)
    header = ["case", "size", "dtype", "threads", *(f"{n} ms" for n in names)]
    header += ["best peer / cnnkit", "check"]
    body = []
    for row in rows:
        ratio = row.ratio
        body.append(
            [row.case, row.size, row.dtype, str(row.threads)]
            + [cell(row.results.get(n)) for n in names]
            + [f"{ratio:.2f}x" if ratio is not None else "-", verdict(row)]
        )
    return Table(header, body, {0, 1, 2, len(header) - 1})


def render_text(rows: Sequence[Row]) -> str:
    """A fixed-width table."""
    header, body, left = table(rows)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def render_markdown_table(rows: Sequence[Row]) -> str:
    header, body, left = table(rows)
    align = [":--" if i in left else "--:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *body])


def problems(rows: Iterable[Row]) -> Iterator[str]:
    """Each disagreement and error once, and each missing implementation once."""
    seen = set()
    for row in rows:
        for name, m in row.results.items():
            if m.status == "missing":
                line = f"MISSING {name}: {m.note}"
            elif m.agrees is False or m.status == "error":
                kind = "MISMATCH" if m.agrees is False else "ERROR"
                line = f"{kind} {row.module}/{row.case} {row.size} {row.dtype}, {name}: {m.note}"
            else:
                continue
            if line not in seen:
                seen.add(line)
                yield line


def _loads(load: Sequence[float] | None) -> str:
    return " ".join(f"{x:.2f}" for x in load) if load else "unknown"


def describe_machine(info: dict[str, Any]) -> list[str]:
    """Lines saying where and when a report was made."""
    load = info["load_average"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, "
        f"Python {info['python']}",
        f"Versions: {versions}; cnnkit SIMD path: {info['simd']}; commit {info['commit']}",
        f"Date: {info['date']}; load average (1, 5, 15 min): {_loads(load['start'])} at the "
        f"start, {_loads(load['end'])} at the end",
    ]


MARKDOWN_INTRO = """\
# cnnkit benchmark results

Generated by `{command}`: do not edit by hand; re-run the benchmarks and regenerate.
Times are medians in milliseconds after a warm-up call (with `--rounds N` in a section's
command: the best of N rounds, each implementation timed in turn). "best peer / cnnkit" is
the fastest peer's time divided by cnnkit's at the same thread count (> 1: cnnkit is
faster); the NumPy reference is not a peer. A time marked "!" disagrees with cnnkit's
result (see "check"). A "control" column (`--control`) is a 512 x 512 float32 cnnkit matmul
timed in turn with the case: its 1-thread / 2-thread ratio is the second core's worth at that
moment, to read a case's 2-thread scaling against.
"""


def render_markdown(reports: Sequence[dict[str, Any]], command: str) -> str:
    """RESULTS.md: one section per recorded report."""
    parts = [MARKDOWN_INTRO.format(command=command)]
    for report in reports:
        rows = [row_from_dict(r) for r in report["rows"]]
        modules = ", ".join(dict.fromkeys(r.module for r in rows))
        parts.append(f"## {modules}\n")
        parts.append("\n".join(f"- {line}" for line in describe_machine(report["machine"])))
        parts.append(f"- Command: `{report['command']}`\n")
        parts.append(render_markdown_table(rows) + "\n")
        found = list(problems(rows))
        if found:
            parts.append("Notes:\n\n" + "\n".join(f"- {line}" for line in found) + "\n")
    return "\n".join(parts)


def row_from_dict(data: dict[str, Any]) -> Row:
    """Inverse of :func:`report_dict`'s rows (the stored ratio is recomputed)."""
    fields = {k: v for k, v in data.items() if k not in ("results", "ratio")}
    return Row(**fields, results={k: Measurement(**v) for k, v in data["results"].items()})


def report_dict(rows: Sequence[Row], info: dict[str, Any], command: str) -> dict[str, Any]:
    return {
        "machine": info,
        "command": command,
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }


# --- command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short time budget, few repeats")
    parser.add_argument(
        "--rounds",
        metavar="N",
        type=int,
        default=1,
        help="time each implementation N times in turn with the others; report its best round",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="time a fixed cnnkit matmul in turn with each case (a 'control' column)",
    )
    parser.add_argument("--filter", metavar="REGEX", help='run cases whose "module/name" matches')
    parser.add_argument(
        "--threads",
        metavar="LIST",
        type=lambda s: [int(t) for t in s.split(",")],
        help="comma-separated thread counts (default: 1 and all cores)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the results as Markdown")
    parser.add_argument(
        "--load", metavar="FILE", nargs="+", help="report recorded JSON files instead of running"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load and args.json:
        print("--json records a run; it cannot be combined with --load", file=sys.stderr)
        return 2
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    if args.load:
        reports = [json.loads(Path(path).read_text()) for path in args.load]
    else:
        selected = discover(args.filter)
        if not selected:
            print(f"no case matches {args.filter!r}", file=sys.stderr)
            return 2
        if args.rounds < 1:
            print(f"--rounds must be at least 1, got {args.rounds}", file=sys.stderr)
            return 2
        threads = args.threads or sorted({1, all_threads()})
        load_at_start, busy = load_average(), cpu_busy()
        if busy is not None and busy > BUSY:
            print(WARN_BUSY.format(busy), file=sys.stderr)
        budget = replace(QUICK if args.quick else FULL, rounds=args.rounds, control=args.control)
        rows = run(selected, threads, budget)
        reports = [report_dict(rows, machine_info(load_at_start), command)]
    for report in reports:
        rows = [row_from_dict(r) for r in report["rows"]]
        print("\n".join(describe_machine(report["machine"])) + "\n")
        print(render_text(rows))
        for line in problems(rows):
            print("!! " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(reports[0], indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(reports, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
