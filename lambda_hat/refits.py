"""Run a kernel again with larger settings when its own certificate asks for it.

A kernel may define ``KernelSpec.refit`` (VI does, for ``rank="auto"``): after each run it looks
at the outputs and either returns the options of another run (a larger variational family, say)
or None. :func:`run_with_refits` drives that loop for every entry point (``sample``,
``sample_checkpoints``, ``sample_masks``), keeps the attempt the kernel prefers, and charges the
work of every attempt to it: the reported gradient evaluations, data passes and seconds are those
of the whole search, not of the last run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lambda_hat.kernels import KernelOutput
from lambda_hat.posterior import LocalPosterior

__all__ = ["run_with_refits"]

Execute = Callable[[Any], tuple[list[KernelOutput], float, float]]


def run_with_refits(
    run: Any,
    execute: Execute,
    dim: int,
    posterior: LocalPosterior,
    announce: Callable[[str], None] | None = None,
) -> tuple[list[KernelOutput], Any, float, float, list[dict[str, Any]]]:
    """Run, ask the kernel's ``refit`` whether to run again, and repeat.

    Args:
        run: the validated run settings (``lambda_hat.api._RunSettings``) of the first attempt.
        execute: ``execute(run) -> (outputs, compile_s, run_s)``, one KernelOutput per posterior
            (one for ``sample``, one per checkpoint or mask for the vectorised entry points).
        dim: the number of sampled coordinates (what bounds, e.g., a rank).
        posterior: the posterior the run settings were checked against
            (``run.with_options(options, posterior)`` gives the next attempt's settings).
        announce: called with a line saying why another attempt runs (the progress display), or
            None.

    Returns:
        (outputs of the reported attempt with the gradient evaluations and data passes of all
        attempts added in, the run settings of that attempt, compile seconds of all attempts,
        sampling seconds of all attempts, the kernel's record of each attempt; [] when the kernel
        did not search).
    """
    refit = run.spec.refit
    history: list[dict[str, Any]] = []
    attempts: list[tuple[list[KernelOutput], Any]] = []
    compile_s = run_s = 0.0
    while True:
        outputs, c, r = execute(run)
        compile_s, run_s = compile_s + c, run_s + r
        attempts.append((outputs, run))
        if refit is None:
            break
        options, record = refit(run.options, outputs, dim, history)
        if record is None:  # the kernel does not search with these options
            break
        history.append(record)
        if options is None:
            break
        if announce is not None:
            shown = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in record.items()
                              if k != "outcome")  # fmt: skip
            announce(f"{run.spec.name}: {shown}: {record['outcome']}; fitting again ...")
        run = run.with_options(options, posterior)
    reported = history[-1].get("report", len(attempts) - 1) if history else len(attempts) - 1
    outputs, run = attempts[reported]
    totals = [
        out._replace(
            grad_evals=sum(np.asarray(a[0][i].grad_evals) for a in attempts),
            data_passes=sum(np.asarray(a[0][i].data_passes) for a in attempts),
        )
        for i, out in enumerate(outputs)
    ]
    return totals, run, compile_s, run_s, history


def refit_message(history: Sequence[dict[str, Any]]) -> str | None:
    """What a search over a kernel's settings concluded, as a warning.

    Args:
        history: the kernel's records of the attempts (see :func:`run_with_refits`).

    Returns:
        The last record's ``"message"``, or None when there is none (or no record).
    """
    return history[-1].get("message") if history else None
