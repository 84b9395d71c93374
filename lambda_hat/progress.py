"""Progress reporting from inside jitted loops (``sample(..., progress=True)``).

``tick(t, total, label)`` is called in a lax.scan body (outside the vmap over chains); every
``total // 20`` steps it fires an unordered ``jax.debug.callback`` that prints to stderr. The
callback does not block the device loop. Host-side stages (compiling, sampling, done) are
printed by :func:`say`.
"""

from __future__ import annotations

import sys
import time

import jax

_START: dict[str, float] = {}


def say(message: str) -> None:
    """Print ``[lambda_hat] message`` to stderr (flushed at once).

    Args:
        message: the text to print.
    """
    print(f"[lambda_hat] {message}", file=sys.stderr, flush=True)


def _report(t, total, label):
    t, total = int(t), int(total)
    now = time.perf_counter()
    start = _START.setdefault(label, now)
    if t == 0:
        _START[label] = now
        start = now
    head = f"{label}: step {t}/{total} ({100 * t / max(total, 1):.0f}%"
    if t > 0 and now > start:  # no rate (and no "nan steps/s") before the first interval
        rate = t / (now - start)
        eta = (total - 1 - t) / rate
        head += f", {rate:,.0f} steps/s, ~{eta:.0f} s left"
    say(head + ")")


def tick(t: jax.Array, total: int, label: str, enabled: bool, show: jax.Array | bool = True) -> None:
    """Print progress every ~5% of ``total`` steps when ``enabled`` (a Python bool) and ``show``
    (traced: True in the program that runs chain 0, so a run split over devices prints once).

    Args:
        t: the current step index (0-based, traced), compared with ``total``.
        total: number of steps of the loop (a Python int); nothing is printed when it is <= 0.
        label: the stage name printed before the step count; also keys the timer for the
            steps/s rate (restarted when ``t`` is 0).
        enabled: whether to report at all (a Python bool; False adds nothing to the program).
        show: whether this program prints (a traced bool, or True).
    """
    if not enabled or total <= 0:
        return
    every = max(total // 20, 1)
    jax.lax.cond(
        ((t % every == 0) | (t == total - 1)) & show,
        lambda: jax.debug.callback(_report, t, total, label, ordered=False),
        lambda: None,
    )
