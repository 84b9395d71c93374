"""Progress reporting from inside jitted loops (``sample(..., progress=True)``).

``tick(t, total, label)`` is called in a loop body of a kernel's program with an unbatched step
index; every ``total // 100`` steps it fires an unordered ``jax.debug.callback`` that advances a
tqdm progress bar on stderr (steps done, steps/s and the time left). The callback does not block
the device loop. Host-side stages (compiling, sampling, done) are printed by :func:`say`.
"""

from __future__ import annotations

import sys

import jax
from tqdm import tqdm

_BARS: dict[str, tqdm] = {}


def say(message: str) -> None:
    """Print ``[lambda_hat] message`` to stderr (flushed at once).

    Args:
        message: the text to print.
    """
    print(f"[lambda_hat] {message}", file=sys.stderr, flush=True)


def _report(t, total, label):
    """Advance the bar ``label`` to step t + 1 of ``total`` (a new bar at t = 0; closed at the end).
    Callbacks arrive unordered, so a bar never moves back."""
    t, total = int(t), int(total)
    bar = _BARS.get(label)
    if bar is None or (t == 0 and bar.n > 0):
        if bar is not None:
            bar.close()
        bar = tqdm(total=total, desc=f"[lambda_hat] {label}", unit="step", file=sys.stderr, mininterval=0.2, leave=True)
        _BARS[label] = bar
    if t + 1 > bar.n:
        bar.update(t + 1 - bar.n)
    if t >= total - 1:
        bar.close()
        _BARS.pop(label, None)


def tick(t: jax.Array, total: int, label: str, enabled: bool, show: jax.Array | bool = True) -> None:
    """Advance the progress bar every ~1% of ``total`` steps when ``enabled`` (a Python bool) and
    ``show`` (traced: True in the program that runs chain 0, so a run split over devices prints once).

    Args:
        t: the current step index (0-based, traced), compared with ``total``.
        total: number of steps of the loop (a Python int); nothing is printed when it is <= 0.
        label: the bar's name (e.g. the kernel and stage); a bar restarts when ``t`` is 0.
        enabled: whether to report at all (a Python bool; False adds nothing to the program).
        show: whether this program prints (a traced bool, or True).
    """
    if not enabled or total <= 0:
        return
    every = max(total // 100, 1)
    jax.lax.cond((t % every == 0) | (t == total - 1), lambda: advance(t, total, label, True, show), lambda: None)


def advance(t: jax.Array, total: int, label: str, enabled: bool, show: jax.Array | bool = True) -> None:
    """Advance the progress bar to step t + 1 of ``total`` at every call (for loops whose step
    index moves in blocks, such as VI's optimisation); see :func:`tick`.

    Args:
        t: the last step index reached (traced; under vmap each element reports, and the bar
            shows the furthest).
        total: the loop's step budget (a Python int).
        label: the bar's name.
        enabled: whether to report at all (a Python bool).
        show: whether this program prints (a traced bool, or True).
    """
    if not enabled or total <= 0:
        return
    jax.lax.cond(show, lambda: jax.debug.callback(_report, t, total, label, ordered=False), lambda: None)


def close_bars() -> None:
    """Wait for the progress callbacks still in flight, then close every open bar where it stands
    (a loop that stopped before its budget, such as converged VI fits). Called on the host after
    a program has run."""
    jax.effects_barrier()
    for label in list(_BARS):
        _BARS.pop(label).close()


def _step(total, label):
    bar = _BARS.get(label)
    if bar is None:
        bar = _BARS[label] = tqdm(
            total=int(total), desc=f"[lambda_hat] {label}", unit="step", file=sys.stderr, mininterval=0.2, leave=True
        )
    bar.update(1)
    if bar.n >= bar.total:
        bar.close()
        _BARS.pop(label, None)


def count_step(total: int, label: str, enabled: bool, show: jax.Array | bool = True) -> None:
    """Advance the progress bar ``label`` by one step, for a loop body that has no step index of
    its own (BlackJAX's warmup adaptation, through its per-step info hook). The callback takes no
    batched argument, so under vmap it fires once per step for all chains.

    Args:
        total: the loop's number of steps (a Python int).
        label: the bar's name.
        enabled: whether to report at all (a Python bool).
        show: whether this program prints (a traced bool, or True).
    """
    if not enabled or total <= 0:
        return
    jax.lax.cond(show, lambda: jax.debug.callback(_step, total, label, ordered=False), lambda: None)
