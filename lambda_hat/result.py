"""LLCResult: λ̂ with its Monte Carlo error, traces, diagnostics, timings and config."""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    import arviz
    import xarray
    from matplotlib.figure import Figure

_ARRAY_FIELDS = ("llc_per_chain", "loss_trace", "llc_trace", "valid_chains")

# The version of the files written by LLCResult.save, stored as "format_version" in the .json.
# 1: files written before the entry existed (no "format_version"); 2: the same fields, versioned.
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
_FLOAT_FIELDS = ("llc", "llc_se", "loss_at_wstar", "nbeta", "gamma", "data_passes")
_NPZ_PREFIXES = ("extra__", "positions__")


def _format_version(meta: dict[str, Any], where: Path) -> int:
    version = meta.pop("format_version", 1)
    if isinstance(version, bool) or version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
        raise ValueError(
            f"{where}: result file format version {version!r} is not supported; this version of "
            f"lambda_hat reads format versions {supported} (a newer lambda_hat may read this file)"
        )
    return int(version)


def _check_names(kind: str, found: set[str], allowed: set[str], required: set[str], where: Path) -> None:
    unexpected, missing = sorted(found - allowed), sorted(required - found)
    if unexpected or missing:
        parts = [f"unexpected {kind} {unexpected}"] if unexpected else []
        parts += [f"missing {kind} {missing}"] if missing else []
        raise ValueError(
            f"{where}: not a result written by LLCResult.save: {'; '.join(parts)} (expected {sorted(allowed)})"
        )


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

    Attributes:
        llc: λ̂ = nβ·(mean of L(w_t) − L_n(w*)) over post-warmup draws of the valid chains (VI:
            importance-weighted; full-batch SGLD, RMSProp-SGLD and Adam-SGLD: less the estimated step-size
            bias, see ``diagnostics["step_size_bias"]``).
        llc_se: Monte Carlo standard error of ``llc``, sd(λ̂_t)/sqrt(ESS).
        llc_per_chain: λ̂ of each chain (NaN for a chain flagged invalid).
        loss_trace: (chains, draws) loss at each draw: the minibatch loss for SG kernels (an
            unbiased estimate of L_n), the full L_n for full-batch kernels and VI.
        llc_trace: (chains, draws) per-draw λ̂: nβ·(loss_trace − loss_at_wstar), computed without
            cancellation; for the SGLD kernels with the step-size correction applied
            (``diagnostics["step_size_bias"]["applied"]``), that minus the per-draw correction of
            the valid chains, so that ``llc`` is its mean there too.
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
            ``params`` whose leaves have shape (chains, draws, leaf shape…), the points whose losses
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
        """The number of chains run (valid or not)."""
        return int(self.loss_trace.shape[0])

    @property
    def num_draws(self) -> int:
        """The number of kept draws per chain."""
        return int(self.loss_trace.shape[1])

    def plot(self, path: str | None = None) -> Figure:
        """Loss traces, running λ̂ per chain and the λ̂ distribution (needs matplotlib).

        Args:
            path: also save the figure to this file (format from its suffix); None saves nothing.

        Returns:
            The matplotlib Figure.
        """
        from lambda_hat.plotting import plot_result

        return plot_result(self, path)

    def to_arviz(self) -> arviz.InferenceData | xarray.DataTree:
        """The posterior variables ``llc`` and ``loss`` (chains × draws), with the scalar results
        as attributes, for ArviZ (needs the ``arviz`` extra).

        Returns:
            An ``arviz.InferenceData`` with arviz 0.x, an ``xarray.DataTree`` with arviz 1.x;
            ``.posterior["llc"]`` in both.
        """
        try:
            import arviz
        except ImportError as err:
            raise ImportError("to_arviz needs arviz: pip install 'lambda_hat[arviz]'") from err
        attrs = {k: v for k, v in self.to_dict(include_traces=False).items() if isinstance(v, (int, float, str, bool))}
        posterior = {"llc": np.asarray(self.llc_trace), "loss": np.asarray(self.loss_trace)}
        if int(arviz.__version__.split(".")[0]) >= 1:  # arviz 1.x: groups in one dict, attrs per group
            return arviz.from_dict({"posterior": posterior}, attrs={"posterior": attrs})
        return arviz.from_dict(posterior=posterior, attrs=attrs)

    def summary(self) -> str:
        """A readable multi-line summary.

        Returns:
            The summary text (also what ``str(result)`` gives).
        """
        d = self.diagnostics
        lines = [
            f"LLC estimate ({self.kernel}): λ̂ = {self.llc:.4g} ± {self.llc_se:.2g} (MCSE)",
            f"  chains × draws: {self.num_chains} × {self.num_draws}"
            f"   valid chains: {int(np.sum(self.valid_chains))}/{self.num_chains}",
            "  " + self._settings_line(),
            "  per chain: " + ", ".join(f"{x:.4g}" for x in np.asarray(self.llc_per_chain)),
            f"  nβ = {self.nbeta:.4g}   γ = {self.gamma:.4g}   L_n(w*) = {self.loss_at_wstar:.6g}"
            f"   ‖∇L_n(w*)‖ = {d.get('grad_norm_at_wstar', float('nan')):.2e}",
            f"  ESS = {d.get('ess', float('nan')):.1f}   R-hat = {d.get('rhat', float('nan')):.4f}",
        ]
        virial = d.get("virial")
        if isinstance(virial, dict):
            worst = virial["groups"].get(virial["worst_group"])
            lines.append(
                f"  virial self-check E[v·∂U]/d = {virial['ratio']:.4f} ± {virial['se']:.2g} (1 under the posterior)"
                + (
                    f"; farthest group {virial['worst_group']}: {worst['ratio']:.4f} ± {worst['se']:.2g}"
                    if worst is not None and len(virial["groups"]) > 1
                    else ""
                )
            )
        basin = d.get("basin")
        if isinstance(basin, dict):
            lines.append(
                f"  distance from w*: rms {basin['rms_distance']:.3g} per weight (localizer scale 1/√γ = "
                f"{basin['localizer_scale']:.3g}; share γ·E‖v‖²/d = {basin['localizer_share']:.3g})"
                f"   ‖w − w*‖² trend over the draws {basin['distance_growth']:+.1%} (z = {basin['distance_z']:.1f})"
            )
        refits = d.get("refits")
        if refits:
            lines.append(
                "  rank search: "
                + " → ".join(f"rank {r['rank']} (k̂ {r['pareto_k_max']:.2f}, {r['outcome']})" for r in refits)
            )
        for name, obs in (d.get("observables") or {}).items():
            lines.append(
                f"  observable {name!r}: λ̂ = {obs['llc']:.4g} ± {obs['llc_se']:.2g}   L(w*) = {obs['loss_at_wstar']:.6g}"
            )
        for key, value in d.items():
            if key in (
                "ess",
                "rhat",
                "grad_norm_at_wstar",
                "ess_per_chain",
                "llc_sd",
                "virial",
                "basin",
                "observables",
                "refits",
            ):
                continue
            if isinstance(value, dict):
                lines.append(f"  {key}: " + ", ".join(f"{k} = {_short(v)}" for k, v in value.items()))
                continue
            if isinstance(value, str):
                lines.append(f"  {key}: {value}")
                continue
            arr = np.asarray(value)
            if arr.dtype.kind in "fc" and arr.size:
                lines.append(f"  {key}: " + ", ".join(f"{x:.4g}" for x in arr.ravel()[:8]))
            elif arr.size:
                lines.append(f"  {key}: {arr.ravel()[:8].tolist()}")
        lines.append(f"  gradient evaluations: {self.grad_evals:,}   full-data passes: {self.data_passes:,.1f}")
        lines.append(
            f"  time: compile {self.timings.get('compile_s', 0):.2f} s, run {self.timings.get('run_s', 0):.2f} s"
        )
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)

    def _settings_line(self) -> str:
        """Step size, batch, warmup and the sampled dimension, from ``config``."""
        c = self.config
        parts = []
        if c.get("step_size") is not None:
            parts.append(f"ε = {c['step_size']:.3g}")
        n = c.get("n")
        batch = c.get("batch_size")
        parts.append(f"batch = {'full' if batch is None else batch}" + (f" of n = {n}" if n is not None else ""))
        if c.get("num_warmup") is not None:
            parts.append(f"warmup = {c['num_warmup']}")
        if c.get("dim") is not None:
            parts.append(f"sampled weights d = {c['dim']}" + (" (masked)" if c.get("masked") else ""))
        return "   ".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self, include_traces: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict of every number (traces included unless asked not to;
        positions never: they are arrays of chains × draws × d, kept in ``save``'s .npz).

        Args:
            include_traces: include ``loss_trace``, ``llc_trace`` and ``extra``.

        Returns:
            {field name: value}, with arrays as nested lists, non-finite floats as the strings
            "nan", "inf" or "-inf", and values JSON cannot hold as their ``repr``.
        """
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "positions" or (not include_traces and name in ("loss_trace", "llc_trace", "extra")):
                continue
            out[name] = _jsonable(getattr(self, name))
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.json`` (numbers, config, diagnostics) and ``<path>.npz`` (traces).

        The .json records the file format as ``"format_version"`` (:data:`FORMAT_VERSION`).

        Args:
            path: the base path of the two files; a ``.json`` or ``.npz`` suffix is dropped, and
                missing parent folders are created.

        Returns:
            The path of the .json file written.
        """
        base = _base_path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, **self.to_dict(include_traces=False)}
        for name in _ARRAY_FIELDS:
            meta.pop(name, None)
        _with_extension(base, ".json").write_text(json.dumps(meta, indent=2))
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        for key, value in self.extra.items():
            arrays[f"extra__{key}"] = np.asarray(value)
        if self.positions is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(self.positions)[0]:
                arrays[f"positions__{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        np.savez(_with_extension(base, ".npz"), **arrays)
        return _with_extension(base, ".json")

    @classmethod
    def load(cls, path: str | Path) -> LLCResult:
        """Read a result written by :meth:`save`, in any of :data:`SUPPORTED_FORMAT_VERSIONS`
        (a file without ``"format_version"`` is version 1).

        Args:
            path: the ``.json`` or ``.npz`` file written by :meth:`save`, or their common base path.

        Returns:
            The :class:`LLCResult`; its ``positions``, if saved, as a dict keyed by leaf path.

        Raises:
            ValueError: for an unsupported format version, for fields that a result does not have
                and for missing required fields.
        """
        base = _base_path(path)
        json_path, npz_path = _with_extension(base, ".json"), _with_extension(base, ".npz")
        meta = json.loads(json_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(
                f"{json_path}: not a result written by LLCResult.save: "
                f"expected a JSON object, got {type(meta).__name__}"
            )
        _format_version(meta, json_path)
        fields = cls.__dataclass_fields__
        meta_names = {name for name in fields if name not in _ARRAY_FIELDS and name not in ("extra", "positions")}
        required = {
            name for name in meta_names if fields[name].default is MISSING and fields[name].default_factory is MISSING
        }
        _check_names("fields", set(meta), meta_names, required, json_path)
        with np.load(npz_path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        plain = {k for k in arrays if not k.startswith(_NPZ_PREFIXES)}
        _check_names("arrays", plain, set(_ARRAY_FIELDS), set(_ARRAY_FIELDS), npz_path)
        extra = {k[len("extra__") :]: v for k, v in arrays.items() if k.startswith("extra__")}
        positions = {k[len("positions__") :]: v for k, v in arrays.items() if k.startswith("positions__")} or None
        kwargs = {name: arrays[name] for name in _ARRAY_FIELDS}
        kwargs.update(meta)
        if isinstance(kwargs.get("diagnostics"), dict):  # "nan"/"inf" strings back to floats, at any depth
            kwargs["diagnostics"] = _restore_non_finite(kwargs["diagnostics"])
        for key, kind in [*((k, float) for k in _FLOAT_FIELDS), ("grad_evals", int)]:
            try:
                kwargs[key] = kind(kwargs[key])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{json_path}: field {key!r}: expected a number, got {kwargs[key]!r}") from err
        return cls(extra=extra, positions=positions, **kwargs)


def _base_path(path: str | Path) -> Path:
    """The common base path of a result's two files: ``path`` without a ``.json`` or ``.npz``
    suffix (any other dot in the name, as in ``run_beta0.5``, is part of the name)."""
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".json", ".npz") else base


def _with_extension(base: Path, extension: str) -> Path:
    """``base`` with ``extension`` appended (not replacing a dotted part of the name)."""
    return base.with_name(base.name + extension)


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _restore_non_finite(value: Any) -> Any:
    """Undo :func:`_jsonable`'s non-finite floats: the strings "nan", "inf" and "-inf" (at any
    depth of dicts and lists) become floats again."""
    if isinstance(value, dict):
        return {k: _restore_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_non_finite(v) for v in value]
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def _short(value: Any) -> str:
    """A number as 4 significant digits; anything else as str."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)
