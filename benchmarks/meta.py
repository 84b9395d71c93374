"""The run environment every benchmark records beside its results."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import jax

import lambda_hat as lh


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Precision, versions, machine, CPU count and date, plus the benchmark's own ``extra`` fields."""
    return dict(
        x64=bool(jax.config.jax_enable_x64),
        jax=jax.__version__,
        lambda_hat=lh.__version__,
        machine=platform.platform(),
        cpus=os.cpu_count(),
        date=datetime.date.today().isoformat(),
        **extra,
    )
