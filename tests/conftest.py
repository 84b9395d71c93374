"""Shared test helpers. The run dtype is set by JAX_ENABLE_X64 (tox envs x32 / x64).

Compiled programs are shared between tests through JAX's persistent compilation cache: the
pytest-xdist workers (and the subprocesses some tests start) write every XLA executable that took
longer than 0.5 s to compile into one folder, and a test that lowers the same program (same HLO,
same JAX and XLA versions, same flags) loads it instead of compiling it again. The executable
loaded is the one XLA built, so results are bit-identical to a fresh compilation. The folder is a
new temporary one per pytest run, removed at the end, so a run never depends on an earlier one;
set LAMBDA_HAT_TEST_COMPILATION_CACHE to a folder to keep the cache between runs instead.

Most tests run short chains, and compiling their programs costs more than running them, so XLA's
optimization passes are off by default (``jax_disable_most_optimizations``; the programs compute
the same quantities, and the tolerances come from Monte Carlo error, not rounding). The few tests
whose run time dominates (long chains, calibration sweeps) are marked ``@pytest.mark.xla_optimized``
and compile with XLA's optimizations at LLVM level 1 (``--xla_backend_optimization_level=1``
instead of the default 3), which runs them 1.5-4x faster than unoptimized: on these programs
level 1 runs as fast as level 3 and compiles 2-3x faster (docs/llc_over_training.md's examples
take 15.9 s at level 1, 24.4 s at level 3 and 28.2 s unoptimized; x32, 2 cores). They run first,
so that the parallel workers share them out early. Set LAMBDA_HAT_TEST_XLA_OPTIMIZE=1 to optimize
every test's programs with XLA's default pipeline (as a user's programs are).

XLA:CPU's newer MLIR fusion emitters compile these programs more slowly than its classic LLVM IR
emitters (the larger programs, VI's and NUTS's, in about half the time with the classic ones), so
the tests turn them off with ``--xla_cpu_use_fusion_emitters=false`` in XLA_FLAGS when the
installed XLA knows that flag (an unknown flag in XLA_FLAGS aborts the process, so it is probed
in a subprocess first). Set LAMBDA_HAT_TEST_XLA_FLAGS=0 to keep XLA's default emitters.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

_CACHE_ENV = "LAMBDA_HAT_TEST_COMPILATION_CACHE"
_OWNED_CACHE: list[str] = []  # the temporary folder this (controller) process created
_OPTIMIZE_ALL = os.environ.get("LAMBDA_HAT_TEST_XLA_OPTIMIZE", "0") == "1"
_OPTIMIZATIONS_OFF = "JAX_DISABLE_MOST_OPTIMIZATIONS"
_FAST_COMPILE_FLAGS = "--xla_cpu_use_fusion_emitters=false"
_OPTIMIZATION_LEVEL_FLAG = "--xla_backend_optimization_level=1"  # the xla_optimized tests' level
_FLAGS_ENV = "LAMBDA_HAT_TEST_XLA_FLAGS"  # "1": add them (when supported), "0": do not


def _xla_flags_with(flags: str) -> str:
    """This process's XLA_FLAGS with ``flags`` appended."""
    return f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def _xla_flags_supported(flags: str) -> bool:
    """Whether the installed XLA accepts ``flags`` (it aborts on an unknown flag in XLA_FLAGS)."""
    env = {**os.environ, "XLA_FLAGS": _xla_flags_with(flags), "JAX_PLATFORMS": "cpu"}
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pytest_configure(config):
    cache = os.environ.get(_CACHE_ENV)
    if cache is None:  # the controller (or a run without xdist): the workers inherit the variable
        cache = tempfile.mkdtemp(prefix="lambda_hat_xla_cache_")
        _OWNED_CACHE.append(cache)
        os.environ[_CACHE_ENV] = cache
    # Decided once, in the controller, before any process has started XLA; the workers and the
    # tests' subprocesses inherit XLA_FLAGS (and the decision, so they do not probe again).
    if os.environ.get(_FLAGS_ENV, "1") == "1":
        use = _xla_flags_supported(_FAST_COMPILE_FLAGS)
        os.environ[_FLAGS_ENV] = "added" if use else "0"
        if use:
            os.environ["XLA_FLAGS"] = _xla_flags_with(_FAST_COMPILE_FLAGS)
    # The xla_optimized tests' LLVM level (unoptimized programs get level 0 from JAX regardless),
    # unless every test is to be optimized as a user's programs are, or XLA_FLAGS sets a level.
    if not _OPTIMIZE_ALL and "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = _xla_flags_with(_OPTIMIZATION_LEVEL_FLAG)
    # JAX reads these variables at import, in the workers and in subprocesses; this process has
    # imported jax already, so it is configured directly as well.
    settings = {
        "jax_compilation_cache_dir": cache,
        "jax_persistent_cache_min_compile_time_secs": 0.5,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
        jax.config.update(name, value)
    # The default for code that runs outside a test's own fixtures (module- and session-scoped
    # fixtures, and the subprocesses they start); _xla_optimization_level sets it per test.
    _set_optimizations_off(not _OPTIMIZE_ALL)


def _set_optimizations_off(off: bool) -> None:
    """In this process, and (through the environment variable) in the subprocesses it starts."""
    os.environ[_OPTIMIZATIONS_OFF] = "1" if off else "0"
    jax.config.update("jax_disable_most_optimizations", off)


def pytest_collection_modifyitems(config, items):
    """Run the long tests (those marked ``xla_optimized``) first, so that the pytest-xdist workers
    share them out early and finish together instead of one worker running a long test alone at
    the end. The order is otherwise the collection order (a stable sort), the same in every worker,
    as xdist requires."""
    items.sort(key=lambda item: item.get_closest_marker("xla_optimized") is None)


@pytest.fixture(autouse=True)
def _xla_optimization_level(request):
    """Optimization passes off, unless the test is marked ``xla_optimized`` (see the module
    docstring); the default is restored after the test."""
    _set_optimizations_off(not _OPTIMIZE_ALL and request.node.get_closest_marker("xla_optimized") is None)
    yield
    _set_optimizations_off(not _OPTIMIZE_ALL)


def pytest_unconfigure(config):
    while _OWNED_CACHE:
        shutil.rmtree(_OWNED_CACHE.pop(), ignore_errors=True)


@pytest.fixture(scope="session")
def x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def assert_close_to_exact(result, exact: float, rel: float, n_se: float = 3.0, bias: float = 0.0):
    """|λ̂ − exact| <= max(rel·|exact|, n_se·MCSE) + |bias|, with a readable failure message.

    ``bias`` is a known, stated systematic offset (e.g. SGLD's step-size bias), never a fudge.
    """
    tol = max(rel * abs(exact), n_se * result.llc_se) + abs(bias)
    err = result.llc - exact
    assert np.isfinite(result.llc) and np.isfinite(result.llc_se)
    assert abs(err) <= tol, (
        f"{result.kernel}: λ̂ = {result.llc:.4f} ± {result.llc_se:.4f}, exact {exact:.4f}, "
        f"error {err:+.4f} exceeds tolerance {tol:.4f}"
    )


def assert_virial_passes(result, tolerance: float = 0.0, n_se: float = 3.0):
    """The virial self-check of an exact sampler: E[v_i·∂_iU] = 1, overall and per parameter leaf,
    within max(tolerance, n_se·se), and no virial warning in the result."""
    virial = result.diagnostics["virial"]
    rows = [("overall", virial["ratio"], virial["se"])] + [
        (name, g["ratio"], g["se"]) for name, g in virial["groups"].items()
    ]
    for name, ratio, se in rows:
        assert np.isfinite(ratio) and se > 0, (name, ratio, se)
        assert abs(ratio - 1) <= max(tolerance, n_se * se), (
            f"{result.kernel}: virial ratio of {name} = {ratio:.4f} ± {se:.4f}, expected 1"
        )
    assert not any("virial self-check" in w for w in result.warnings), result.warnings
