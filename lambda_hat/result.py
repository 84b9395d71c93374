"""LLCResult: λ̂ with its Monte Carlo error, traces, diagnostics, timings and config."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

_ARRAY_FIELDS = ("llc_per_chain", "loss_trace", "llc_trace", "valid_chains")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # jax arrays
        return _jsonable(np.asarray(value))
    return repr(value)


@dataclass
class LLCResult:
    """The outcome of :func:`lambda_hat.sample`.

    llc: λ̂ = nβ·(mean of L(w_t) − L_n(w*)) over post-warmup draws of the valid chains.
    llc_se: Monte Carlo standard error of ``llc``, sd(λ̂_t)/sqrt(ESS).
    llc_per_chain: λ̂ of each chain (NaN for a chain flagged invalid).
    loss_trace: (chains, draws) loss at each draw: the minibatch loss for SG kernels (an
        unbiased estimate of L_n), the full L_n for full-batch kernels and VI.
    llc_trace: (chains, draws) nβ·(loss_trace − loss_at_wstar), computed without cancellation.
    loss_at_wstar: L_n(w*).
    nbeta, gamma: the posterior's nβ and γ.
    kernel: the kernel name; config: every setting used (defaults filled in).
    diagnostics: ESS, R-hat, ‖∇L_n(w*)‖, valid chains and kernel-specific entries.
    timings: seconds for compilation ("compile_s"), sampling ("run_s") and in total.
    grad_evals: gradient evaluations of the log-density (minibatch or full), all chains,
        warmup/tuning included; data_passes: the same work in full passes over the data.
    warnings: the warnings raised while sampling, as text.
    extra: kernel-specific traces (e.g. the VI ELBO trace).
    positions: with ``sample(..., save_positions=True)``, the sampled parameters: a pytree like
        ``params`` whose leaves have shape (chains, draws, *leaf shape), the points whose losses
        are ``loss_trace``; None otherwise. ``save`` stores each leaf; ``load`` returns them as a
        dict keyed by the leaf's path (``jax.tree_util.keystr``), since the tree type is not saved.
    """

    llc: float
    llc_se: float
    llc_per_chain: np.ndarray
    loss_trace: np.ndarray
    llc_trace: np.ndarray
    loss_at_wstar: float
    nbeta: float
    gamma: float
    kernel: str
    config: dict[str, Any]
    diagnostics: dict[str, Any]
    timings: dict[str, float]
    grad_evals: int
    data_passes: float
    valid_chains: np.ndarray
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    positions: Any = field(default=None, repr=False)

    @property
    def num_chains(self) -> int:
        return int(self.loss_trace.shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.loss_trace.shape[1])

    def plot(self, path: str | None = None):
        """Loss traces, running λ̂ per chain and the λ̂ distribution (needs matplotlib)."""
        from lambda_hat.plotting import plot_result

        return plot_result(self, path)

    def to_arviz(self):
        """An arviz.InferenceData with posterior variables ``llc`` and ``loss`` (chains × draws)
        and the sample stats kept per chain (needs the ``arviz`` extra)."""
        try:
            import arviz
        except ImportError as err:
            raise ImportError("to_arviz needs arviz: pip install 'lambda_hat[arviz]'") from err
        attrs = {k: v for k, v in self.to_dict(include_traces=False).items()
                 if isinstance(v, (int, float, str, bool))}
        return arviz.from_dict(
            posterior={"llc": np.asarray(self.llc_trace), "loss": np.asarray(self.loss_trace)},
            attrs=attrs,
        )

    def summary(self) -> str:
        """A readable multi-line summary."""
        d = self.diagnostics
        lines = [
            f"LLC estimate ({self.kernel}): λ̂ = {self.llc:.4g} ± {self.llc_se:.2g} (MCSE)",
            f"  chains × draws: {self.num_chains} × {self.num_draws}"
            f"   valid chains: {int(np.sum(self.valid_chains))}/{self.num_chains}",
            "  per chain: " + ", ".join(f"{x:.4g}" for x in np.asarray(self.llc_per_chain)),
            f"  nβ = {self.nbeta:.4g}   γ = {self.gamma:.4g}   L_n(w*) = {self.loss_at_wstar:.6g}"
            f"   ‖∇L_n(w*)‖ = {d.get('grad_norm_at_wstar', float('nan')):.2e}",
            f"  ESS = {d.get('ess', float('nan')):.1f}   R-hat = {d.get('rhat', float('nan')):.4f}",
        ]
        for key, value in d.items():
            if key in ("ess", "rhat", "grad_norm_at_wstar", "ess_per_chain", "llc_sd"):
                continue
            arr = np.asarray(value)
            if arr.dtype.kind in "fc" and arr.size:
                lines.append(f"  {key}: " + ", ".join(f"{x:.4g}" for x in arr.ravel()[:8]))
            elif arr.size:
                lines.append(f"  {key}: {arr.ravel()[:8].tolist()}")
        lines.append(
            f"  gradient evaluations: {self.grad_evals:,}   full-data passes: {self.data_passes:,.1f}"
        )
        lines.append(
            f"  time: compile {self.timings.get('compile_s', 0):.2f} s, run {self.timings.get('run_s', 0):.2f} s"
        )
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self, include_traces: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict of every number (traces included unless asked not to;
        positions never: they are arrays of chains × draws × d, kept in ``save``'s .npz)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "positions" or (not include_traces and name in ("loss_trace", "llc_trace", "extra")):
                continue
            out[name] = _jsonable(getattr(self, name))
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.json`` (numbers, config, diagnostics) and ``<path>.npz`` (traces)."""
        base = Path(path)
        if base.suffix in (".json", ".npz"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        meta = self.to_dict(include_traces=False)
        for name in _ARRAY_FIELDS:
            meta.pop(name, None)
        base.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        for key, value in self.extra.items():
            arrays[f"extra__{key}"] = np.asarray(value)
        if self.positions is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(self.positions)[0]:
                arrays[f"positions__{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        np.savez(base.with_suffix(".npz"), **arrays)
        return base.with_suffix(".json")

    @classmethod
    def load(cls, path: str | Path) -> "LLCResult":
        """Read a result written by :meth:`save`."""
        base = Path(path)
        if base.suffix in (".json", ".npz"):
            base = base.with_suffix("")
        meta = json.loads(base.with_suffix(".json").read_text())
        with np.load(base.with_suffix(".npz")) as npz:
            arrays = {k: npz[k] for k in npz.files}
        extra = {k[len("extra__"):]: v for k, v in arrays.items() if k.startswith("extra__")}
        positions = {k[len("positions__"):]: v for k, v in arrays.items() if k.startswith("positions__")} or None
        kwargs = {name: arrays[name] for name in _ARRAY_FIELDS}
        for name in cls.__dataclass_fields__:
            if name not in kwargs and name not in ("extra", "positions"):
                kwargs[name] = meta[name]
        for key in ("llc", "llc_se", "loss_at_wstar", "nbeta", "gamma", "data_passes"):
            kwargs[key] = float(kwargs[key])
        kwargs["grad_evals"] = int(kwargs["grad_evals"])
        return cls(extra=extra, positions=positions, **kwargs)
