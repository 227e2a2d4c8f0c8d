"""Fuzzing load_model with hostile files: truncation at random points, bit flips, hostile
zip members (names, methods, flags, declared sizes), bombs and hostile JSON.

Every file either loads or raises ValueError naming its path; nothing else may escape, and
memory stays bounded. The Hypothesis searches run in one fresh process, whose peak
resident size (/proc's VmHWM) is compared with its size before the searches: a
bomb that got through, or an allocation sized by a declaration, would show there. Under
the ``ci`` profile each search is bounded (60 derandomized examples); ``dev`` runs 200.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import modelfiles as mf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnkit

pytestmark = pytest.mark.fuzz

_TESTS = Path(__file__).resolve().parent
# The searches make their files here; the subprocess sets it.
_WORKDIR: Path | None = None
_COUNT = [0]
_WORST: list = [0, ""]  # the largest one-case peak growth (KiB) and its case
_PEAK = [0]  # the highest VmHWM (KiB) seen at the end of a case (each case restarts it)


class _Fixtures:
    """The valid file and the payloads the strategies splice, made once per process."""

    def __init__(self, directory: Path) -> None:
        self.stored = mf.saved_bytes(directory)
        self.parts = mf.members(self.stored)
        self.deflated = mf.rezip(self.parts, zipfile.ZIP_DEFLATED)
        self.meta = json.loads(self.parts["cnnkit.json"])
        # 256 MB of zeros in a few hundred KB: beyond any default max_memory here.
        self.bomb = mf.npy_bomb("w0", 256 << 20)


_FIXTURES: _Fixtures | None = None


def fixtures() -> _Fixtures:
    global _FIXTURES
    if _FIXTURES is None:
        assert _WORKDIR is not None, "the searches run through main()"
        _FIXTURES = _Fixtures(_WORKDIR)
    return _FIXTURES


# Loading is fuzzed under an explicit 16 MiB budget rather than the default floor (64 MiB):
# a bomb declaring just under the budget decodes legitimately, so a small budget keeps the
# bound below tight while still showing that nothing decodes past it.
_BUDGET = 16 << 20


def check(blob: bytes) -> None:
    """Load ``blob`` from a file: it loads, or a ValueError names the path."""
    assert _WORKDIR is not None
    _COUNT[0] += 1
    path = _WORKDIR / f"case-{_COUNT[0]}.cnnkit"
    path.write_bytes(blob)
    _reset_peak()
    start = _status_kib("VmRSS")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cnnkit.io.NonFiniteWeightsWarning)
            cnnkit.load_model(path, max_memory=_BUDGET)
    except ValueError as exc:
        assert repr(str(path)) in str(exc), f"the message does not name the path: {exc}"
    finally:
        path.unlink()
        peak = _status_kib("VmHWM")
        _PEAK[0] = max(_PEAK[0], peak)
        grew = peak - start
        if grew > _WORST[0]:  # the case to look at when the bound below fails
            _WORST[:] = [grew, f"case {_COUNT[0]} ({len(blob)} bytes, {blob[:60]!r})"]


# deadline=None here, not only in the profiles: this object is made when the module is
# imported, before main() loads the profile, so it would keep Hypothesis's 200 ms default.
_SEARCH = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# -- the searches ---------------------------------------------------------------------------
@_SEARCH
@given(data=st.data(), deflated=st.booleans())
def search_truncation(data, deflated):
    blob = fixtures().deflated if deflated else fixtures().stored
    check(blob[: data.draw(st.integers(0, len(blob) - 1), label="length")])


@_SEARCH
@given(data=st.data(), deflated=st.booleans())
def search_bit_flips(data, deflated):
    blob = bytearray(fixtures().deflated if deflated else fixtures().stored)
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 7)), min_size=1, max_size=8
        )
    )
    for position, bit in flips:
        blob[position] ^= 1 << bit
    check(bytes(blob))


_NAMES = st.sampled_from(["cnnkit.json", "weights.npz", "optimizer.npz"]) | st.text(max_size=40)


@st.composite
def hostile_members(draw):
    """A zip of valid, bomb and random members under valid and hostile names, then with
    methods, flags and sizes overwritten (bzip2 and lzma appear that way only: writing with
    lzma would itself take 100 MB and hide what loading takes)."""
    f = fixtures()
    payloads = st.sampled_from([*f.parts.values(), f.bomb]) | st.binary(max_size=300)
    entries = draw(
        st.lists(st.tuples(_NAMES, payloads, st.sampled_from([0, 8])), min_size=0, max_size=5)
    )
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point
        with zipfile.ZipFile(out, "w") as z:
            for name, payload, method in entries:
                z.writestr(zipfile.ZipInfo(name or "x"), payload, compress_type=method)
    blob = out.getvalue()
    headers = mf.central_headers(blob)
    for i in draw(st.lists(st.sampled_from(headers), max_size=3)) if headers else []:
        field, fmt = draw(
            st.sampled_from([(8, "<H"), (10, "<H"), (20, "<I"), (24, "<I"), (34, "<H")])
        )
        limit = 2 ** (8 * struct.calcsize(fmt)) - 1
        value = draw(st.sampled_from([0, 1, 9, 12, 14, 99, limit]) | st.integers(0, limit))
        blob = mf.set_field(blob, i + field, fmt, value)
    return blob


@_SEARCH
@given(blob=hostile_members())
def search_hostile_members(blob):
    check(blob)


@_SEARCH
@given(
    declared=st.sampled_from([0, 1, 1000, 64 << 20, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    outer=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    lie=st.booleans(),
)
def search_bombs(declared, outer, lie):
    f = fixtures()
    blob = mf.rezip({**f.parts, "weights.npz": f.bomb}, outer)
    if lie:
        blob = mf.with_declared_size(blob, "weights.npz", declared)
    check(blob)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 1, 16000, 2**31, 2**63, float("nan"), float("inf")])
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_meta(draw):
    """The valid JSON with its input shape redeclared, one value found by a random walk
    replaced by hostile JSON, and the architecture wrapped in nesting deep enough to exhaust
    a recursive parser (each at random)."""
    meta = json.loads(json.dumps(fixtures().meta))
    if draw(st.booleans()):  # a declared input shape, as large as a file may claim
        shape = draw(st.lists(st.integers(0, 2**40) | st.sampled_from([1, 4, 8000]), max_size=4))
        meta["model"]["config"]["build_input_shape"] = shape
        meta["model"]["config"]["input_layer"]["config"]["input_shape"] = shape
    parent, key = {"root": meta}, "root"
    while isinstance(parent[key], (dict, list)) and parent[key] and draw(st.booleans()):
        node = parent[key]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
    parent[key] = draw(_JSON)
    text = json.dumps(meta)
    if draw(st.booleans()):
        depth = draw(st.sampled_from([100, 1000, 100_000]))
        text = text.replace('"model": {', '"model": ' + "[" * depth + "{", 1)
        text = text.replace('"weights": [', "]" * depth + ', "weights": [', 1)
    return text.encode()


@_SEARCH
@given(meta=hostile_meta())
def search_hostile_json(meta):
    parts = dict(fixtures().parts)
    parts["cnnkit.json"] = meta
    check(mf.rezip(parts))


_SEARCHES = [
    search_truncation,
    search_bit_flips,
    search_hostile_members,
    search_bombs,
    search_hostile_json,
]


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _reset_peak() -> None:
    """Restart VmHWM from the present size (Linux 4.0+), so that the peak is the searches'
    own and not that of the imports and fixtures before them."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    """Run every search in this process, then print the peak growth of the resident size."""
    import conftest  # noqa: F401  (registers and loads the Hypothesis profile)

    global _WORKDIR
    with tempfile.TemporaryDirectory() as directory:
        _WORKDIR = Path(directory)
        fixtures()
        check(fixtures().stored)  # warm up: the first load imports what loading needs
        _reset_peak()
        before = _status_kib("VmRSS")
        for search in _SEARCHES:
            search()
        after = max(_PEAK[0], _status_kib("VmHWM"))
    print(f"worst case: {_WORST[0] // 1024} MiB, {_WORST[1]}")
    print(f"cases {_COUNT[0]} peak_growth {(after - before) * 1024}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_hostile_model_files_raise_value_error_with_bounded_memory():
    paths = [str(_TESTS), os.environ.get("PYTHONPATH", "")]
    # The fixture model's training would raise glibc's trim threshold for the process
    # (cnnkit.training.memory), so freed blocks would stay resident and count here: this
    # test bounds what the loader keeps, so it leaves malloc alone.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "CNNKIT_KEEP_FREED_MEMORY": "0",
    }
    # conftest first: it loads the Hypothesis profile, which the searches' settings (made
    # when this module is imported) inherit; after it, the ci profile's derandomized cases.
    script = "import conftest, test_fuzz_model_files as m; m.main()"
    done = mf.run_fresh(["-c", script], 600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    words = done.stdout.split()
    cases, growth = int(words[words.index("cases") + 1]), int(words[-1])
    assert cases >= len(_SEARCHES) * 10
    # The bombs declare up to 4 GB; the budget lets at most 16 MiB be decoded (15 MiB
    # of growth measured), so four budgets leave room for the copies made while decoding.
    assert growth < 4 * _BUDGET, (
        f"the peak grew by {growth / 2**20:.0f} MiB over {cases} files; {done.stdout[-400:]}"
    )
