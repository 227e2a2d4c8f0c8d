"""The installed package: location, metadata, import weight, threads, console script."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest
from isolated import run_in_forked_child

import cnnkit

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    return result.stdout.strip()


def test_tests_run_against_the_installed_package():
    installed = pathlib.Path(cnnkit.__file__).resolve()
    assert REPO / "python" not in installed.parents, installed


def test_version_matches_metadata():
    assert cnnkit.__version__ == importlib.metadata.version("cnnkit")


def test_import_loads_nothing_heavier_than_numpy():
    heavy = ["torch", "torchvision", "scipy", "pandas", "matplotlib", "cv2", "PIL", "tqdm"]
    loaded = run_python(
        f"import sys, cnnkit; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    assert loaded == ""


def test_submodules_load_lazily():
    loaded = run_python("import sys, cnnkit; print('cnnkit.ops' in sys.modules)")
    assert loaded == "False"
    assert cnnkit.ops.box_area([[0.0, 0.0, 2.0, 3.0]])[0] == 6.0


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cnnkit.nope  # noqa: B018


@pytest.fixture
def restore_threads():
    before = cnnkit.get_num_threads()
    yield
    cnnkit.set_num_threads(before)


@pytest.mark.usefixtures("restore_threads")
def test_set_num_threads_round_trip():
    cnnkit.set_num_threads(3)
    assert cnnkit.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, 5000])
def test_set_num_threads_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match=r"set_num_threads\(\): n must be between 1 and 4096"):
        cnnkit.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", None, True])
def test_set_num_threads_rejects_non_int(bad):
    with pytest.raises(TypeError, match=r"set_num_threads\(\): n must be an int"):
        cnnkit.set_num_threads(bad)


def test_omp_num_threads_is_honoured():
    assert run_python("import cnnkit; print(cnnkit.get_num_threads())", OMP_NUM_THREADS="1") == "1"


def test_cnnkit_isa_environment_variable_selects_the_path():
    code = "from cnnkit import _core; print(_core.get_isa())"
    assert run_python(code, CNNKIT_ISA="baseline") == "baseline"


def test_console_script_info():
    script = pathlib.Path(sys.executable).with_name("cnnkit")
    out = subprocess.run([script, "info"], check=True, capture_output=True, text=True).stdout
    assert f"cnnkit                {cnnkit.__version__}" in out
    assert f"simd path             {cnnkit._core.get_isa()}" in out
    assert "threads" in out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "cnnkit", "info"], capture_output=True, text=True, check=True
    )
    assert "compiler" in result.stdout


def test_cli_without_command_fails_with_usage():
    result = subprocess.run([sys.executable, "-m", "cnnkit"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: cnnkit" in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_on_one_thread():
    # GNU OpenMP's team outlives fork() without its threads: a child asking for two
    # threads would wait for them forever, so it runs (and stays) on one.
    setup = """
        cnnkit.set_num_threads(2)
        a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        expected = ops.matmul(a, a)  # starts the parent's thread team
        """
    child = """
        import pytest
        assert cnnkit.get_num_threads() == 1
        assert np.array_equal(ops.matmul(a, a), expected)
        with pytest.raises(RuntimeError, match=r"set_num_threads\\(\\): this process was forked"):
            cnnkit.set_num_threads(2)
        cnnkit.set_num_threads(1)
        """
    run_in_forked_child(setup, child)
