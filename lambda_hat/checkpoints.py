"""``lambda_hat.sample_checkpoints``: λ̂ at every checkpoint of one model, in one compiled program.

The checkpoints of a training run share their architecture, loss and data, so one program
serves them all: the kernel's run is vmapped over checkpoints (and, inside, over chains) and
compiled once, then called on groups of ``group_size`` checkpoints (the last group is padded by
repeating its final checkpoint, whose copies are dropped).

Checkpoint k is sampled with the key ``jax.random.fold_in(key, k)`` (``key`` as given to
``sample``: an int seed is ``jax.random.key(seed)``), so its result is the result of

    lambda_hat.sample(loss_fn, checkpoints[k], data, key=jax.random.fold_in(jax.random.key(seed), k), ...)

with the same settings. For the SGLD family the draws are bit-identical to that call (measured in
float32 and float64). Other kernels compute the same steps, but vectorising the program over
checkpoints lets XLA order some reductions differently, and samplers whose path depends on
comparisons (NUTS's U-turns, VI's stopping rule, HMC's accept/reject) can amplify a last-bit
difference into a different chain: their estimates agree within Monte Carlo error, not to the bit.
Observables (``observables=``) are evaluated at the same draws, but their full-dataset means are
reduced in whatever order XLA picks for the vectorised program, so they agree with the separate
call up to the rounding of that sum.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from lambda_hat.api import (
    LLCWarning,
    _assemble,
    _merge_options,
    _run_settings,
    as_key,
)
from lambda_hat.checks import boolean, positive_int
from lambda_hat.kernels import get_kernel
from lambda_hat.posterior import LocalPosterior
from lambda_hat.result import LLCResult
from lambda_hat.vectorised import run_vectorised, shared_inputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMAT_VERSION = 1
_STATIONARITY = "w* is not near-stationary"


@dataclass
class CheckpointResults:
    """λ̂ over a sequence of checkpoints (see :func:`lambda_hat.sample_checkpoints`).

    Attributes:
        steps: (K,) the checkpoints' labels (training steps; 0 … K−1 when none were given).
        results: the K per-checkpoint :class:`LLCResult`\\ s, in order.
        compile_s: seconds to compile the one program (0 when it was cached).
        run_s: seconds of sampling, all checkpoints.
    """

    steps: np.ndarray
    results: list[LLCResult]
    compile_s: float
    run_s: float

    @property
    def llc(self) -> np.ndarray:
        """(K,) λ̂ per checkpoint."""
        return np.array([r.llc for r in self.results])

    @property
    def llc_se(self) -> np.ndarray:
        """(K,) the Monte Carlo standard error of each λ̂."""
        return np.array([r.llc_se for r in self.results])

    def observable(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The data-refined λ̂ on one observable dataset at every checkpoint (``observables=`` of
        :func:`lambda_hat.sample_checkpoints`).

        Args:
            name: the observable's name, a key of the ``observables`` dict.

        Returns:
            ((K,) λ̂_k, (K,) its MCSE) per checkpoint.

        Raises:
            KeyError: no observable of that name was recorded.
        """
        found = [r.diagnostics.get("observables", {}).get(name) for r in self.results]
        if any(f is None for f in found):
            known = sorted(self.results[0].diagnostics.get("observables", {})) if self.results else []
            raise KeyError(f"observable {name!r}: not recorded; the observables are {known}")
        return np.array([f["llc"] for f in found]), np.array([f["llc_se"] for f in found])

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, k: int) -> LLCResult:
        return self.results[k]

    def table(self) -> str:
        """One row per checkpoint: step, λ̂ ± MCSE, R-hat, the virial ratio, L_n(w*), warnings.

        Returns:
            The table as text: a header line, a rule, then one line per checkpoint (the virial
            ratio is NaN for kernels without the self-check; ``warnings`` is the count).
        """
        head = f"{'step':>10} {'λ̂':>10} {'MCSE':>8} {'R-hat':>7} {'virial':>8} {'L_n(w*)':>11} {'warnings':>8}"
        rows = [head, "-" * len(head)]
        for step, r in zip(self.steps, self.results, strict=True):
            virial = r.diagnostics.get("virial", {}).get("ratio", np.nan)
            rows.append(
                f"{step:>10g} {r.llc:10.4g} {r.llc_se:8.3g} {r.diagnostics['rhat']:7.3f} {virial:8.3f} "
                f"{r.loss_at_wstar:11.4g} {len(r.warnings):8d}"
            )
        return "\n".join(rows)

    def plot(
        self,
        train_loss: Sequence[float] | None = None,
        test_loss: Sequence[float] | None = None,
        path: str | None = None,
    ) -> Figure:
        """λ̂ ± 2·MCSE against the step, with the data-refined λ̂ of every observable, and the
        loss curves (one value per checkpoint) in a panel beside it. Needs matplotlib (the
        ``plots`` extra).

        The step axis is logarithmic (linear up to the smallest positive step) when the positive
        steps span a factor of 100 or more, as log-spaced checkpoints usually do; the loss axis is
        logarithmic when the losses are positive and span a factor of 100 or more.

        Args:
            train_loss: the training loss at each checkpoint; None leaves it out.
            test_loss: the test loss at each checkpoint, likewise.
            path: also save the figure to this file (format from its suffix); None saves nothing.

        Returns:
            The matplotlib Figure (one panel, or two with a loss curve).

        Raises:
            ValueError: if a loss curve does not have one value per checkpoint.
        """
        from lambda_hat.plotting import _pyplot

        curves = {}
        for values, name in ((train_loss, "train loss"), (test_loss, "test loss")):
            if values is not None:
                values = np.asarray(values, float)
                if values.shape != self.steps.shape:
                    raise ValueError(f"{name.replace(' ', '_')}: expected {len(self.steps)} values, got {values.shape}")
                curves[name] = values
        plt = _pyplot()
        fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(11 if curves else 6.5, 4), squeeze=False)
        ax = axes[0, 0]
        ax.errorbar(self.steps, self.llc, yerr=2 * self.llc_se, marker="o", capsize=3, color="C0", label="λ̂ ± 2 MCSE")
        names = sorted(self.results[0].diagnostics.get("observables", {})) if self.results else []
        for j, name in enumerate(names):
            llc, se = self.observable(name)
            ax.errorbar(self.steps, llc, yerr=2 * se, marker="s", ms=4, capsize=2, ls="--", color=f"C{j + 3}",
                        label=f"λ̂ on {name!r} ± 2 MCSE")  # fmt: skip
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(
            xlabel="step",
            ylabel="λ̂",
            title=f"λ̂ over training ({self.results[0].kernel}, nβ = {self.results[0].nbeta:.4g}, γ = {self.results[0].gamma:.3g})",
        )
        ax.legend(loc="best", frameon=False, fontsize=8)
        if curves:
            loss_ax = axes[0, 1]
            for (name, values), color in zip(curves.items(), ("C1", "C2")):
                loss_ax.plot(self.steps, values, marker=".", color=color, label=name)
            every = np.concatenate(list(curves.values()))
            if np.all(every > 0) and every.max() >= 100 * every.min():
                loss_ax.set_yscale("log")
            loss_ax.set(xlabel="step", ylabel="loss", title="loss")
            loss_ax.legend(loc="best", frameon=False, fontsize=8)
        positive = self.steps[self.steps > 0]
        if positive.size and positive.max() >= 100 * positive.min():
            for a in axes[0]:
                a.set_xscale("symlog", linthresh=float(positive.min()))
                a.set_xlim(left=float(self.steps.min()))
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def save(self, path: str | Path) -> Path:
        """Write a folder: ``index.json`` (the steps, timings, format version) and each
        checkpoint's result as ``checkpoint_<k>.json`` / ``.npz`` (:meth:`LLCResult.save`).

        Args:
            path: the folder to write (created if missing; files already there are overwritten).

        Returns:
            The path of the folder's ``index.json``.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"checkpoint_{k:05d}" for k in range(len(self))]
        for name, result in zip(names, self.results, strict=True):
            result.save(folder / name)
        index = {
            "format_version": FORMAT_VERSION,
            "steps": self.steps.tolist(),
            "results": names,
            "compile_s": self.compile_s,
            "run_s": self.run_s,
        }
        (folder / "index.json").write_text(json.dumps(index, indent=2))
        return folder / "index.json"

    @classmethod
    def load(cls, path: str | Path) -> CheckpointResults:
        """Read a folder written by :meth:`save` (the folder or its ``index.json``).

        Args:
            path: the folder, or the path of its ``index.json``.

        Returns:
            The :class:`CheckpointResults`, with each checkpoint's result read by
            :meth:`LLCResult.load`.

        Raises:
            FileNotFoundError: if the folder has no ``index.json``.
            ValueError: if the index's format version is not ``FORMAT_VERSION`` (1), or a
                checkpoint's result cannot be read.
        """
        folder = Path(path)
        if folder.name == "index.json":
            folder = folder.parent
        index_file = folder / "index.json"
        if not index_file.exists():
            raise FileNotFoundError(f"{index_file}: no checkpoint collection here (expected the folder save wrote)")
        index = json.loads(index_file.read_text())
        version = index.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{index_file}: format_version {version!r} is not one this lambda_hat reads (expected {FORMAT_VERSION})"
            )
        results = [LLCResult.load(folder / name) for name in index["results"]]
        return cls(np.asarray(index["steps"]), results, float(index["compile_s"]), float(index["run_s"]))


def _as_list(checkpoints: Any) -> list[Any]:
    """A list of pytrees (one per checkpoint), from a list or from a pytree with a leading axis."""
    if isinstance(checkpoints, list):
        if not checkpoints:
            raise ValueError("checkpoints: expected at least one checkpoint, got an empty list")
        structure = jax.tree.structure(checkpoints[0])
        for k, c in enumerate(checkpoints):
            if jax.tree.structure(c) != structure:
                raise ValueError(
                    f"checkpoints: checkpoint {k} has a different tree structure from checkpoint 0 "
                    f"({jax.tree.structure(c)} vs {structure}); every checkpoint must have one structure"
                )
        return checkpoints
    leaves, treedef = jax.tree.flatten(checkpoints)
    if not leaves:
        raise ValueError("checkpoints: expected a list of pytrees or a pytree of arrays with a checkpoint axis")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "checkpoints: a pytree (not a list) must hold arrays with one shared leading checkpoint axis; "
            f"got leading sizes {sorted(s for s in sizes if s is not None)}"
            + (" and scalars" if None in sizes else "")
            + " (pass a list to give one pytree per checkpoint)"
        )
    (num,) = sizes
    return [jax.tree.unflatten(treedef, [x[k] for x in leaves]) for k in range(num)]


def sample_checkpoints(
    loss_fn: Callable[[Any, Any], jax.Array],
    checkpoints: Any,
    data: Any,
    *,
    steps: Sequence[float] | None = None,
    kernel: str = "sgld",
    key: Any = 0,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_warmup: int | None = None,
    beta: float | None = None,
    nbeta: float | None = None,
    gamma: float = 1.0,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    mask: Any = None,
    observables: Mapping[str, Any] | None = None,
    group_size: int | None = None,
    progress: bool = False,
    save_positions: bool = False,
    warn_stationarity: bool = True,
    **kernel_options: Any,
) -> CheckpointResults:
    """Estimate λ̂ at every checkpoint of a training run, in one compiled program.

    Each checkpoint w*_k gets its own localized posterior
    p_k(w) ∝ exp(−nβ (L_n(w) − L_n(w*_k)) − (γ/2)‖w − w*_k‖²) and its own λ̂_k, exactly as
    :func:`lambda_hat.sample` would compute it with ``key = jax.random.fold_in(key, k)``;
    the kernel's program is vmapped over checkpoints and compiled once.

    ``kernel``, ``key``, ``num_chains``, ``num_draws``, ``num_warmup``, ``beta``, ``nbeta``,
    ``gamma``, ``batch_size``, ``chunk_size``, ``mask``, ``observables``, ``save_positions`` and
    ``warn_stationarity`` are those of
    :func:`lambda_hat.sample`, shared by every checkpoint.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss, as for ``sample``.
        checkpoints: a list of pytrees of one structure (one per checkpoint), or one pytree whose
            array leaves share a leading checkpoint axis of length K. Flax nnx Modules are not
            accepted here: pass each checkpoint's ``nnx.state(model, nnx.Param)`` and a
            ``loss_fn`` that merges it with the graph.
        data: a pytree of arrays with a shared leading axis n (the same data for every checkpoint).
        steps: the checkpoints' labels (training steps) for tables and plots; default 0 … K−1.
        group_size: checkpoints per call of the compiled program (default: all K at once). Memory
            grows with group_size × num_chains; a smaller group bounds it at no extra compilation.
        progress: print progress per group of checkpoints to stderr.
        **kernel_options: options of the chosen kernel, as for ``sample``.

    Returns:
        A :class:`CheckpointResults`: ``llc`` and ``llc_se`` arrays, ``steps``, the per-checkpoint
        ``results``, ``table()``, ``plot()``, ``save()``/``load()``. Warnings are issued once per
        cause: a non-stationary w* (expected early in training, where a checkpoint is not a
        minimum) is reported once for all the checkpoints it concerns.

    Example:
        >>> import jax, lambda_hat
        >>> from lambda_hat.targets import linear_regression
        >>> t = linear_regression(d=5, seed=0)
        >>> runs = lambda_hat.sample_checkpoints(t.loss_fn, [t.params, t.params], t.data, steps=[100, 200])
        >>> runs.llc.shape
        (2,)
        >>> one = lambda_hat.sample(t.loss_fn, t.params, t.data, key=jax.random.fold_in(jax.random.key(0), 1))
        >>> bool(abs(one.llc - runs.llc[1]) <= 3 * one.llc_se)
        True
    """
    spec = get_kernel(kernel)
    options = _merge_options(spec, kernel_options)
    rng_key = as_key(key)
    warn_stationarity = boolean("warn_stationarity", warn_stationarity)
    trees = _as_list(checkpoints)
    from flax import nnx

    if isinstance(trees[0], nnx.Module):
        raise TypeError(
            "checkpoints: flax nnx Modules are not accepted by sample_checkpoints; pass each checkpoint's "
            "nnx.state(model, nnx.Param) and a loss_fn(state, batch) that merges it with the graph (nnx.merge)"
        )
    num = len(trees)
    steps = np.arange(num) if steps is None else np.asarray(steps)
    if steps.shape != (num,) or not np.issubdtype(steps.dtype, np.number):
        raise ValueError(f"steps: expected {num} numbers (one per checkpoint), got {steps!r}")
    group = num if group_size is None else positive_int("group_size", group_size)
    group = min(group, num)
    posteriors: list[LocalPosterior] = []
    for w in trees:  # the first casts data and observables; the others share its arrays
        posteriors.append(
            LocalPosterior(
                loss_fn,
                w,
                data,
                beta=beta,
                nbeta=nbeta,
                gamma=gamma,
                chunk_size=chunk_size,
                mask=mask,
                observables=observables,
            )  # fmt: skip
        )
        data, observables = shared_inputs(posteriors[0])
    run = _run_settings(
        spec, posteriors[0], options, num_chains, num_draws, num_warmup, batch_size, progress, save_positions
    )
    keys = [jax.random.fold_in(rng_key, k) for k in range(num)]
    outputs, run, compile_s, run_s, refits, seconds_each = run_vectorised(
        run, keys, posteriors, group, "checkpoints", progress
    )

    results = []
    for k, (out, seconds) in enumerate(zip(outputs, seconds_each)):
        posterior = posteriors[k]
        grad_norm, shift = (float(x) for x in posterior.stationarity())
        config = run.config(
            key=f"fold_in({key!r}, {k})", beta=beta, posterior=posterior, masked=mask is not None, devices=1
        )
        config.update(checkpoint=k, step=float(steps[k]))
        result = _assemble(
            spec, posterior, out, config, compile_s if k == 0 else 0.0, seconds, grad_norm, shift,
            run.exact_trace, emit=False, warn_stationarity=warn_stationarity, refits=refits,
        )  # fmt: skip
        results.append(result)
    _warn_once_per_cause(results, steps)
    return CheckpointResults(steps, results, compile_s, run_s)


def _warn_once_per_cause(results: list[LLCResult], steps: np.ndarray) -> None:
    """Issue each checkpoint's warnings, the stationarity warning once for all checkpoints."""
    non_stationary = [k for k, r in enumerate(results) if any(w.startswith(_STATIONARITY) for w in r.warnings)]
    if non_stationary:
        shifts = ", ".join(
            f"{steps[k]:g}: {results[k].diagnostics['stationarity_shift']:+.3g}" for k in non_stationary[:8]
        ) + (", ..." if len(non_stationary) > 8 else "")
        warnings.warn(
            f"{_STATIONARITY} at {len(non_stationary)} of {len(results)} checkpoints (steps {shifts}: the "
            "first-order shift of E[λ̂] from ‖∇L_n(w*)‖). A checkpoint that is not a minimum (early in "
            "training) has no local learning coefficient in the strict sense; its λ̂ measures the tempered "
            "posterior localized at w* and is comparable across checkpoints only as a trend",
            LLCWarning,
            stacklevel=3,
        )
    for k, r in enumerate(results):
        for message in r.warnings:
            if not message.startswith(_STATIONARITY):
                warnings.warn(f"checkpoint {k} (step {steps[k]:g}): {message}", LLCWarning, stacklevel=3)
