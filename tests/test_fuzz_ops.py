"""Fuzz every public ``cnnkit.ops`` function with hostile arguments (issue 9, section 6).

Each example is a batch: one call of every function in ``ops.__all__``, built
from a valid call with one to three arguments replaced by hostile ones (ints
beyond int64, huge broadcast views that cost no memory, zero-size arrays with
huge other extents, NaN and inf, float16/complex/object/bool/str dtypes,
non-contiguous, negative-stride, Fortran-ordered, read-only and byte-swapped
arrays, lone surrogates, iterators). The batch runs in a child process
(tests/fuzz_child.py) under a time limit; every call must return a result
equal to ``cnnkit.reference`` (when the reference can take the input) or
raise ValueError, TypeError or MemoryError. A crash, a hang, another exception
type or a wrong result fails the test, naming the call.

Bounded for CI (12 batches, seconds); ``CNNKIT_FUZZ=long`` runs 400 batches
locally (``CNNKIT_FUZZ_BATCHES=n`` any number), and the sanitizer build (scripts/sanitize.sh) runs
this module too.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit import ops

pytestmark = pytest.mark.fuzz

LONG = os.environ.get("CNNKIT_FUZZ", "") == "long"
BATCHES = int(os.environ.get("CNNKIT_FUZZ_BATCHES", 400 if LONG else 12))
# Per batch of ~32 calls; generous, since the sanitizer build is several times slower.
TIME_LIMIT = float(os.environ.get("CNNKIT_FUZZ_TIME_LIMIT", "120"))
CHILD = Path(__file__).with_name("fuzz_child.py")

# max_pool's stride argument is `strides` or, after the restructure, `stride`.
POOL_STRIDE = "stride" if "stride" in inspect.signature(ops.max_pool).parameters else "strides"

# Each function's valid call: (name, kind, expression) per argument; a name
# of None is positional. Kinds choose the hostile replacements below.
B = "BOXES(5)"
B32 = "BOXES(4, np.float32, seed=3)"
X2 = "R((2, 7, 6, 3), np.float32)"
W2 = "R((3, 3, 3, 4), np.float32, seed=1)"
ROIS = "[[0, 1.0, 1.0, 5.0, 4.0], [1, 0.5, 0.0, 3.0, 6.5]]"
IMAGE = "np.arange(10 * 9 * 3, dtype=np.uint8).reshape(10, 9, 3) * 7"
VALID = {
    "box_convert": [(None, "boxes", B), (None, "str", "'xyxy'"), (None, "str", "'cxcywh'")],
    "box_area": [(None, "boxes", B32)],
    "clip_boxes": [(None, "boxes", B), (None, "pair", "(30, 40)")],
    "remove_small_boxes": [(None, "boxes", B), (None, "real", "5.0")],
    "box_iou": [(None, "boxes", B), (None, "boxes", B32), ("aligned", "bool", "False")],
    "generalized_box_iou": [(None, "boxes", B), (None, "boxes", "BOXES(3, seed=4)")],
    "distance_box_iou": [(None, "boxes", B32), (None, "boxes", "BOXES(5, np.float32, seed=5)")],
    "complete_box_iou": [
        (None, "boxes", B),
        (None, "boxes", "BOXES(5, seed=6)"),
        ("aligned", "bool", "True"),
    ],
    "nms": [
        (None, "boxes", "BOXES(30)"),
        (None, "array", "SCORES(30)"),
        (None, "real", "0.3"),
        ("score_threshold", "real", "0.1"),
        ("max_output", "int", "10"),
    ],
    "batched_nms": [
        (None, "boxes", "BOXES(30, np.float32)"),
        (None, "array", "SCORES(30, np.float32)"),
        (None, "array", "np.arange(30) % 3"),
        (None, "real", "0.3"),
        ("max_output", "int", "None"),
    ],
    "soft_nms": [
        (None, "boxes", "BOXES(20)"),
        (None, "array", "SCORES(20)"),
        ("method", "str", "'gaussian'"),
        ("sigma", "real", "0.5"),
        ("score_threshold", "real", "0.01"),
    ],
    "matmul": [
        (None, "array", "R((2, 3, 4))"),
        (None, "array", "R((4, 5), seed=1)"),
        ("bias", "array", "R(5, seed=2)"),
        ("activation", "str", "'sigmoid'"),
    ],
    "conv": [
        (None, "array", X2),
        (None, "array", W2),
        (None, "array", "R(4, np.float32, seed=2)"),
        ("stride", "geom", "(2, 1)"),
        ("padding", "padding", "'same'"),
        ("dilation", "geom", "1"),
        ("groups", "int", "1"),
        ("activation", "str", "'relu'"),
        ("winograd", "bool", "None"),
    ],
    "conv1d": [
        (None, "array", "R((2, 9, 2))"),
        (None, "array", "R((3, 1, 4), seed=1)"),
        ("padding", "padding", "((1, 2),)"),
        ("groups", "int", "2"),
        ("dilation", "geom", "2"),
    ],
    "conv2d": [
        (None, "array", "R((1, 5, 5, 6), np.float32)"),
        (None, "array", "R((1, 1, 6, 8), np.float32, seed=1)"),
        ("stride", "geom", "2"),
    ],
    "conv3d": [
        (None, "array", "R((1, 4, 4, 4, 2))"),
        (None, "array", "R((2, 2, 2, 2, 3), seed=1)"),
        ("padding", "padding", "1"),
    ],
    "conv_backward": [
        (None, "array", "R((2, 7, 6, 3))"),
        (None, "array", "R((3, 3, 3, 4), seed=1)"),
        (None, "array", "R((2, 3, 2, 4), seed=2)"),
        ("stride", "geom", "(2, 3)"),
        ("padding", "padding", "1"),
        ("need", "need", "('x', 'w', 'b')"),
    ],
    "conv_max_pool_backward": [
        (None, "array", "R((2, 7, 6, 1))"),
        (None, "array", "R((3, 3, 1, 4), seed=1)"),
        (None, "array", "R((2, 2, 2, 4), seed=2)"),
        (None, "array", "np.zeros((2, 2, 2, 4), np.int64)"),
        (None, "geom", "2"),
        ("padding", "padding", "'valid'"),
        ("pool_stride", "geom", "2"),
        ("relu_output", "array", "R((2, 2, 2, 4), seed=3)"),
    ],
    "conv_stem": [
        (None, "array", "R((2, 3, 13, 12), np.float32)"),
        (None, "array", "R((7, 7, 3, 8), np.float32, seed=1)"),
        (None, "array", "R(8, np.float32, seed=2)"),
        ("stride", "geom", "2"),
        ("padding", "padding", "3"),
        ("activation", "str", "'relu'"),
        ("channels_first", "bool", "True"),
        ("pool_size", "geom", "3"),
        ("pool_stride", "geom", "2"),
        ("pool_padding", "padding", "1"),
    ],
    "gram": [(None, "array", "R((2, 4, 5, 3))"), ("normalize", "str", "'size'")],
    "gram_backward": [
        (None, "array", "R((2, 6, 3), np.float32)"),
        (None, "array", "R((2, 3, 3), np.float32, seed=1)"),
        ("normalize", "str", "'positions'"),
    ],
    "sgd_update": [
        (None, "array", "R((3, 4), np.float32)"),
        (None, "array", "R((3, 4), np.float32, seed=1)"),
        (None, "array", "R((3, 4), np.float32, seed=2)"),
        ("learning_rate", "real", "0.1"),
        ("momentum", "real", "0.9"),
        ("nesterov", "bool", "True"),
    ],
    "add_relu": [
        (None, "array", "R((2, 3, 6), np.float32)"),
        (None, "array", "R((2, 3, 6), np.float32, seed=1)"),
    ],
    "channels_last": [(None, "array", "R((2, 3, 5, 4), np.float32)")],
    "concat": [
        (None, "list", "[R((2, 3, 4), np.float32), R((2, 3, 2), np.float32, seed=1)]"),
        ("axis", "int", "-1"),
    ],
    "adam_update": [
        (None, "array", "R((3, 4))"),
        (None, "array", "R((3, 4), seed=1)"),
        (None, "array", "R((3, 4), seed=2)"),
        (None, "array", "np.abs(R((3, 4), seed=3))"),
        ("step_size", "real", "1e-3"),
        ("beta_1", "real", "0.9"),
        ("beta_2", "real", "0.999"),
        ("epsilon", "real", "1e-7"),
        ("v_hat", "array", "np.abs(R((3, 4), seed=4))"),
    ],
    "batch_norm": [
        (None, "array", "R((2, 4, 5, 7), np.float32)"),
        (None, "array", "R((7,), np.float32, seed=1)"),
        (None, "array", "R((7,), np.float32, seed=2)"),
        ("epsilon", "real", "1e-3"),
    ],
    "batch_norm_backward": [
        (None, "array", "R((3, 4, 5))"),
        (None, "array", "R((3, 4, 5), seed=1)"),
        (None, "array", "R((5,), seed=2)"),
        (None, "array", "R((5,), seed=3)"),
        (None, "array", "np.abs(R((5,), seed=4))"),
        ("epsilon", "real", "1e-5"),
    ],
    "batch_norm_inference": [
        (None, "array", "R((2, 3, 6), np.float32)"),
        (None, "array", "R((6,), np.float32, seed=1)"),
        (None, "array", "R((6,), np.float32, seed=2)"),
        (None, "array", "R((6,), np.float32, seed=3)"),
        (None, "array", "np.abs(R((6,), np.float32, seed=4))"),
        ("epsilon", "real", "1e-3"),
    ],
    "lrn": [
        (None, "array", "R((2, 4, 5, 7))"),
        (None, "int", "5"),
        ("alpha", "real", "0.5"),
        ("beta", "real", "0.75"),
        ("bias", "real", "2.0"),
    ],
    "lrn_backward": [
        (None, "array", "R((2, 3, 6), np.float32)"),
        (None, "array", "R((2, 3, 6), np.float32, seed=1)"),
        (None, "int", "3"),
        ("alpha", "real", "1e-3"),
        ("beta", "real", "0.5"),
        ("bias", "real", "1.0"),
    ],
    "max_pool": [
        (None, "array", "R((2, 7, 6, 3), np.float32)"),
        (None, "geom", "(3, 2)"),
        (POOL_STRIDE, "geom", "2"),
        ("padding", "padding", "'same'"),
        ("return_indices", "bool", "True"),
    ],
    "avg_pool": [
        (None, "array", "R((2, 9, 3))"),
        (None, "geom", "3"),
        (POOL_STRIDE, "geom", "2"),
        ("padding", "padding", "1"),
    ],
    "max_pool_backward": [
        (None, "array", "R((1, 6, 6, 2))"),
        (None, "array", "R((1, 3, 3, 2), seed=1)"),
        (None, "geom", "2"),
    ],
    "avg_pool_backward": [
        (None, "array", "R((1, 5, 2), np.float32)"),
        (None, "array", "R((1, 3, 2), np.float32, seed=1)"),
        (None, "geom", "3"),
        (POOL_STRIDE, "geom", "1"),
    ],
    "global_max_pool": [(None, "array", "R((2, 3, 4, 5))")],
    "global_avg_pool": [(None, "array", "R((2, 3, 4), np.float32)")],
    "yolo_encode": [
        (None, "boxes", "BOXES(6)"),
        (None, "array", "np.arange(6) % 2"),
        ("grid", "geom", "(3, 4)"),
        ("anchors", "array", "[[10.0, 20.0], [30.0, 15.0]]"),
        ("num_classes", "int", "2"),
        ("image_size", "pair", "(60, 80)"),
    ],
    "yolo_encode_batch": [
        (None, "list", "[BOXES(3), BOXES(0)]"),
        (None, "list", "[[0, 1, 0], []]"),
        ("grid", "geom", "2"),
        ("anchors", "array", "[[10.0, 20.0]]"),
        ("num_classes", "int", "2"),
        ("image_size", "pair", "70.0"),
    ],
    "yolo_decode": [
        (None, "array", "YOLO((2, 3, 3, 2, 7))"),
        ("anchors", "array", "[[1.0, 2.0], [3.0, 4.0]]"),
        ("image_size", "pair", "(60, 90)"),
        ("score_threshold", "real", "0.3"),
    ],
    "kmeans_anchors": [
        (None, "array", "np.abs(R((20, 2))) + 0.1"),
        (None, "int", "3"),
        ("iterations", "int", "10"),
        ("seed", "int", "1"),
        ("iou_threshold", "real", "0.5"),
    ],
    "sliding_windows": [
        (None, "array", "np.arange(2 * 6 * 5 * 3, dtype=np.uint8).reshape(2, 6, 5, 3)"),
        (None, "geom", "(3, 2)"),
        (None, "geom", "2"),
    ],
    "window_boxes": [(None, "pair", "(9, 8)"), (None, "geom", "(3, 2)"), (None, "geom", "2")],
    "clip_boxes_to_image": [(None, "boxes", B32), (None, "pair", "(30, 40)")],
    "activation_backward": [
        (None, "array", "R((3, 4))"),
        (None, "array", "R((3, 4), seed=1)"),
        (None, "str", "'leaky_relu'"),
        ("negative_slope", "real", "0.1"),
    ],
    "roi_align": [
        (None, "array", "R((2, 8, 7, 3), np.float32)"),
        (None, "array", ROIS),
        (None, "geom", "(3, 2)"),
        (None, "real", "0.5"),
        (None, "int", "2"),
        (None, "bool", "True"),
    ],
    "roi_align_backward": [
        (None, "array", "R((2, 8, 7, 3))"),
        (None, "array", ROIS),
        (None, "array", "R((2, 3, 3, 3), seed=1)"),
        (None, "geom", "3"),
        (None, "real", "1.0"),
        (None, "int", "-1"),
    ],
    "roi_pool": [
        (None, "array", "R((2, 8, 7, 3))"),
        (None, "array", ROIS),
        (None, "geom", "2"),
        (None, "real", "1.0"),
    ],
    "roi_pool_backward": [
        (None, "array", "R((2, 8, 7, 3), np.float32)"),
        (None, "array", ROIS),
        (None, "array", "R((2, 2, 2, 3), np.float32, seed=1)"),
        (None, "geom", "2"),
    ],
    "masks_to_boxes": [(None, "array", "R((3, 6, 5)) > 0.5")],
    "sigmoid_focal_loss": [
        (None, "array", "R((4, 3))"),
        (None, "array", "(R((4, 3), seed=1) > 0).astype(np.float64)"),
        (None, "real", "0.25"),
        (None, "real", "2.0"),
        (None, "str", "'mean'"),
    ],
    "felzenszwalb": [
        (None, "array", IMAGE),
        ("scale", "real", "10.0"),
        ("sigma", "real", "0.5"),
        ("min_size", "int", "4"),
    ],
    "selective_search": [(None, "array", IMAGE), ("mode", "str", "'fast'"), ("seed", "int", "3")],
}

# Hostile replacements: "{a}" is the valid expression, so that views and
# value changes keep the valid shape.
LAYOUT = ["NONCONTIG({a})", "REVERSED({a})", "READONLY({a})", "BYTESWAPPED({a})", "FORTRAN({a})"]
VALUES = ["WITH({a}, np.nan)", "WITH({a}, np.inf, 1)", "WITH({a}, -np.inf, -1)", "WITH({a}, 3e38)"]
DTYPES = [
    "np.asarray({a}).astype(np.float16)",
    "np.asarray({a}).astype(np.complex64)",
    "np.asarray({a}).astype(object)",
    "np.asarray({a}).astype(bool)",
    "np.asarray({a}).astype(np.int64)",
    "np.asarray({a}).astype(str)",
    "np.asarray({a}).tolist()",
]
SHAPES = [
    "HUGE_ZERO({a})",
    "ZERO_LAST({a})",
    "BROADCAST({a})",
    "BROADCAST({a}, 2**40)",
    "np.asarray({a})[:0]",
    "np.asarray({a})[None]",
    "np.asarray({a}).ravel()",
    "np.zeros(())",
    "np.zeros((1,) * 7)",
]
JUNK = ["None", "'\\ud800'", "b'xyxy'", "object()", "[[1, 'a']]", "{'a': 1}", "iter([1, 2])"]
INTS = [
    "2**63",
    "2**64",
    "2**1100",
    "-2**70",
    "2**63 - 1",
    "2**62 + 1",
    "2**40",
    "np.uint64(2**64 - 1)",
    "np.int8(-1)",
    "0",
    "-1",
    "True",
    "1.5",
    "float('nan')",
]
REALS = [
    "float('nan')",
    "float('inf')",
    "-float('inf')",
    "2**1100",
    "1e308",
    "-1.0",
    "0.0",
    "np.float16(0.5)",
    "complex(1, 1)",
    "'0.5'",
    "True",
]
STRS = ["'\\ud800'", "'XYXY'", "''", "3", "b'xyxy'", "'same\\x00'", "'valid '"]
HOSTILE = {
    "array": LAYOUT + VALUES + DTYPES + SHAPES + JUNK,
    "boxes": LAYOUT + VALUES + DTYPES + SHAPES + JUNK + ["WITH({a}, -5.0, 2)", "WITH({a}, 1e30)"],
    "list": ["[{a}]", "tuple({a})", "iter({a})", "[[], [], []]", "[None]", *JUNK],
    "int": INTS + JUNK,
    "geom": [*INTS, *JUNK, "(2**63, 1)", "(1, 2**64)", "(1,)", "(1, 1, 1, 1)", "[2**62 + 1, 1]"],
    "padding": [
        *INTS,
        *STRS,
        "((2**62, 2**62), (0, 0))",
        "((0, 2**63 - 1),)",
        "((1, 2, 3),)",
        "(1, -1)",
        "[[2**40, 0], [0, 2**40]]",
    ],
    "real": REALS + JUNK,
    "pair": [*REALS, *INTS, "(2**64, 3)", "(0, 3)", "(3,)", "(1, 2, 3)", "'ab'", "np.array([5.0])"],
    "str": STRS + JUNK,
    "bool": ["'yes'", "np.bool_(True)", "2", "None", "np.array([True, False])"],
    "need": ["iter(['x', 'w'])", "{'x', 'b'}", "['x', 'q']", "'xw'", "None", "(('x',),)", "()"],
}
PUBLIC = sorted(name for name in ops.__all__ if inspect.isfunction(getattr(ops, name)))


def test_every_public_function_is_fuzzed():
    assert sorted(VALID) == PUBLIC


def hostile_call(name: str):
    """A strategy: the valid call of `name` with one to three arguments replaced."""
    spec = VALID[name]

    @st.composite
    def draw(draw_from):
        chosen = draw_from(
            st.sets(st.integers(0, len(spec) - 1), min_size=1, max_size=min(3, len(spec)))
        )
        args, kwargs = [], {}
        for i, (arg, kind, expr) in enumerate(spec):
            if i in chosen:
                expr = draw_from(st.sampled_from(HOSTILE[kind])).replace("{a}", expr)
            if arg is None:
                args.append(expr)
            else:
                kwargs[arg] = expr
        return {"fn": name, "args": args, "kwargs": kwargs}

    return draw()


def describe(call: dict) -> str:
    parts = [*call["args"], *(f"{k}={v}" for k, v in call["kwargs"].items())]
    return f"ops.{call['fn']}({', '.join(parts)})"


def run_batch(calls: list[dict], time_limit: float = TIME_LIMIT) -> list[str]:
    """Runs the calls in a child process; returns the failures, one line each."""
    try:
        done = subprocess.run(
            [sys.executable, str(CHILD)],
            input=json.dumps(calls),
            capture_output=True,
            text=True,
            timeout=time_limit,
        )
        stdout, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        stdout, code = out.decode() if isinstance(out, bytes) else out, None
    failures, started = [], None
    for line in stdout.splitlines():
        if line.startswith("start "):
            started = int(line.split()[1])
            continue
        outcome = json.loads(line)
        if outcome["outcome"] in ("wrong-exception", "mismatch", "unbuildable"):
            failures.append(f"{outcome['outcome']}: {describe(calls[started])}: {outcome['error']}")
        started = None
    if code is None:
        failures.append(f"no result within {time_limit} s: {describe(calls[started or 0])}")
    elif code != 0:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        last = describe(calls[started]) if started is not None else "after the last call"
        failures.append(f"{how}: {last}\n{done.stderr[-2000:]}")
    return failures


@settings(
    max_examples=BATCHES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.tuples(*(hostile_call(name) for name in PUBLIC)))
def test_hostile_calls_return_the_reference_or_raise_the_promised_errors(calls):
    failures = run_batch(list(calls))
    assert not failures, "\n".join(failures)


def test_the_harness_reports_crashes_hangs_and_wrong_answers():
    """The judge itself: each kind of failure is reported, naming its call."""
    ok = {"fn": "box_area", "args": ["BOXES(2)"], "kwargs": {}}
    crash = {"fn": "box_area", "args": ["__import__('ctypes').string_at(0)"], "kwargs": {}}
    wrong = {"fn": "box_area", "args": ["BOXES(2)"], "kwargs": {}}
    assert run_batch([ok]) == []
    (report,) = run_batch([ok, crash])
    # SIGABRT under the sanitizers (ASAN_OPTIONS=abort_on_error=1).
    assert re.match(r"killed by SIG(SEGV|ABRT): ops\.box_area\(__import__\('ctypes'\)", report)
    # A result the reference disagrees with (the reference patched in the child).
    wrong["args"] = ["(setattr(reference, 'box_area', lambda b: np.zeros(2)), BOXES(2))[1]"]
    (report,) = run_batch([wrong])
    assert report.startswith("mismatch: ops.box_area(")
    patch = "(setattr(ops, 'box_area', {}), BOXES(2))[1]"
    key_error = {"fn": "box_area", "args": [patch.format("lambda b: {}['k']")], "kwargs": {}}
    (report,) = run_batch([key_error])
    assert report.startswith("wrong-exception: ops.box_area(") and "KeyError" in report
    hang = {"fn": "box_area", "args": [patch.format("lambda b: __import__('time').sleep(60)")]}
    hang["kwargs"] = {}
    (report,) = run_batch([ok, hang], time_limit=5)
    assert report.startswith("no result within 5 s: ops.box_area((setattr")
