"""The tempered, localized posterior at w*.

    p(w) ∝ exp( −nβ · (L_n(w) − L_n(w*)) − (γ/2) · ‖w − w*‖² )

L_n is the mean of the per-example loss over the n data points (``loss_fn(params, batch)``
returns the mean over ``batch``). nβ is the inverse temperature times n: the default is
β* = 1/log n (the WBIC temperature), so nβ = n / log n. Subtracting the constant L_n(w*)
does not change p; it keeps log-densities small, which matters in float32.

:class:`LocalPosterior` is a JAX pytree: w*, data, nβ, γ and L_n(w*) are leaves; the loss
function, the parameter layout, n and the chunk size are static. Passing it into a jitted
function therefore recompiles only when shapes, dtypes or the loss function change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.checks import integer, non_negative_float, real
from lambda_hat.flat import FlatSpec, float_dtype, ravel

LossFn = Callable[[Any, Any], jax.Array]

DEFAULT_CHUNK_SIZE = 8192


def _leading_length(data: Any, what: str = "data") -> int:
    leaves_with_path = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves_with_path:
        raise ValueError(f"{what}: expected a pytree of arrays sharing a leading axis of length n, got no arrays")
    lengths = {}
    for path, leaf in leaves_with_path:
        shape = np.shape(leaf)
        name = jax.tree_util.keystr(path) or "<root>"
        if len(shape) == 0:
            raise ValueError(f"{what}: leaf {name} is a scalar; every leaf needs a leading axis of length n")
        lengths[name] = int(shape[0])
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(f"{what}: all leaves must share the same leading length n, got {detail}")
    return next(iter(lengths.values()))


def _cast_data(data: Any, dtype: jnp.dtype, what: str = "data") -> Any:
    """Floating leaves -> run dtype; integer/bool leaves (labels, indices) kept as they are."""

    def cast(path, leaf):
        name = jax.tree_util.keystr(path) or "<root>"
        kind = np.asarray(leaf).dtype if not isinstance(leaf, jax.Array) else leaf.dtype
        if jnp.issubdtype(kind, jnp.complexfloating):
            raise TypeError(f"{what}: leaf {name} is complex; expected real arrays")
        if not (jnp.issubdtype(kind, jnp.number) or jnp.issubdtype(kind, jnp.bool_)):
            raise TypeError(
                f"{what}: leaf {name} has dtype {kind}; expected numeric arrays (floats are cast to "
                f"the run dtype {jnp.dtype(dtype).name}; integer and bool leaves are kept)"
            )
        arr = jnp.asarray(leaf)
        if jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(dtype)  # checked after the cast: float64 values beyond float32 overflow
            if not bool(jnp.all(jnp.isfinite(arr))):
                raise ValueError(
                    f"{what}: leaf {name} contains NaN or Inf (as {arr.dtype.name}); expected finite values"
                )
        return arr

    return jax.tree_util.tree_map_with_path(cast, data)


def _observable_datasets(observables: Any, data: Any, dtype: jnp.dtype) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """(names, datasets cast to the run dtype) of ``observables``, each checked to have the
    structure of ``data`` and a leading axis of at least one example."""
    if observables is None:
        return (), ()
    if not isinstance(observables, Mapping) or not observables:
        raise TypeError(
            f"observables: expected a non-empty dict {{name: dataset}} of datasets shaped like data, got "
            f"{type(observables).__name__}"
        )
    names, datasets = [], []
    structure = jax.tree.structure(data)
    for name, dataset in observables.items():
        if not isinstance(name, str):
            raise TypeError(f"observables: expected string names, got {name!r}")
        what = f"observables[{name!r}]"
        if jax.tree.structure(dataset) != structure:
            raise ValueError(
                f"{what}: expected a dataset with the pytree structure of data ({structure}), got "
                f"{jax.tree.structure(dataset)}"
            )
        _leading_length(dataset, what)
        for a, b in zip(jax.tree.leaves(dataset), jax.tree.leaves(data)):
            if np.shape(a)[1:] != np.shape(b)[1:]:
                raise ValueError(
                    f"{what}: a leaf of shape {np.shape(a)} where data has {np.shape(b)}; expected the "
                    "same shape after the leading (example) axis"
                )
        names.append(name)
        datasets.append(_cast_data(dataset, dtype, what))
    return tuple(names), tuple(datasets)


def _key_name(entry: Any) -> Any:
    """The dict key, attribute name or index of one path entry of jax.tree_util."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return entry


def _prefix_value(mask: Any, path: tuple) -> Any:
    """The mask's value for the parameter leaf at ``path``: walk the mask's dicts along the path;
    a key the mask does not name is False, and a non-dict value covers its whole subtree."""
    node = mask
    for entry in path:
        if not isinstance(node, Mapping):
            return node
        node = node.get(_key_name(entry), False)
    return node


def _check_mask_keys(mask: Mapping, params: Any, where: str) -> None:
    """Every key a prefix mask names exists in params at that place."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"mask: a dict at {where or '<root>'}, where params holds {type(params).__name__}; a dict mask "
            "names subtrees of dict params"
        )
    unknown = [k for k in mask if k not in params]
    if unknown:
        raise ValueError(f"mask: {unknown} at {where or '<root>'} not in params (its keys there: {list(params)})")
    for k, sub in mask.items():
        if isinstance(sub, Mapping):
            _check_mask_keys(sub, params[k], f"{where}[{k!r}]")


def _mask_indices(mask: Any, params: Any, spec: FlatSpec) -> np.ndarray:
    """Flat indices of the sampled weights selected by ``mask`` (see LocalPosterior)."""
    path_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if callable(mask):
        flags = []
        for (path, leaf), shape in zip(path_leaves, spec.shapes):
            chosen = mask(jax.tree_util.keystr(path), leaf)
            if not isinstance(chosen, (bool, np.bool_)):
                raise ValueError(
                    f"mask: a predicate must return True or False per leaf, got {chosen!r} for "
                    f"{jax.tree_util.keystr(path) or '<root>'}"
                )
            flags.append(np.full(int(np.prod(shape)), bool(chosen)))
    else:
        if isinstance(mask, Mapping):  # a prefix: dicts name subtrees, missing keys are False
            _check_mask_keys(mask, params, "")
            mask_leaves = [_prefix_value(mask, path) for path, _ in path_leaves]
        else:
            try:
                # None counts as a leaf here (it would silently drop out otherwise and shift the flags)
                mask_leaves = jax.tree.leaves(jax.tree.map(lambda _, m: m, params, mask), is_leaf=lambda x: x is None)
            except (ValueError, TypeError) as err:
                raise ValueError(f"mask: expected a pytree of booleans with the structure of params ({err})") from None
        flags = []
        if len(mask_leaves) != len(path_leaves):
            raise ValueError(
                f"mask: expected one boolean leaf per parameter leaf ({len(path_leaves)}), got {len(mask_leaves)}"
            )
        for (path, _), shape, m in zip(path_leaves, spec.shapes, mask_leaves):
            arr = np.asarray(m)
            name = jax.tree_util.keystr(path) or "<root>"
            if arr.dtype != np.bool_:
                raise ValueError(f"mask: leaf {name} is {m!r:.40} with dtype {arr.dtype}; expected booleans")
            try:
                flags.append(np.broadcast_to(arr, shape).ravel())
            except ValueError:
                raise ValueError(
                    f"mask: leaf {name} has shape {arr.shape}, not broadcastable to the parameter shape {shape}"
                ) from None
    flat = np.concatenate(flags)
    if not flat.any():
        raise ValueError("mask: selects no weights; expected at least one True")
    return np.flatnonzero(flat)


def _parameter_groups(params: Any, spec: FlatSpec, free_idx: np.ndarray | None) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, group id of each sampled coordinate): one group per parameter leaf with at least
    one sampled weight, named by its key path (``"<root>"`` for a bare array)."""
    names = [jax.tree_util.keystr(path) or "<root>" for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    leaf_of = np.repeat(np.arange(len(spec.shapes)), [int(np.prod(s)) for s in spec.shapes])
    if free_idx is not None:
        leaf_of = leaf_of[free_idx]
    used, ids = np.unique(leaf_of, return_inverse=True)
    return tuple(names[i] for i in used), ids.astype(np.int32)


def default_nbeta(n: int) -> float:
    """The default inverse temperature times n: nβ* = n/log n (β* = 1/log n, the WBIC
    temperature). Requires n >= 2.

    Args:
        n: number of examples n (>= 2).

    Returns:
        nβ* = n/log n (the product nβ, not β).

    Raises:
        ValueError: n < 2 (log 1 = 0: there is no default temperature for one example).
    """
    n = integer("n", n, minimum=2, expected="an integer >= 2 (the number of examples)")
    return n / math.log(n)


def resolve_nbeta(n: int, beta: float | None, nbeta: float | None) -> float:
    """nβ from either β or nβ (default β* = 1/log n). Giving both is an error.

    Args:
        n: number of examples n (>= 2).
        beta: inverse temperature β (per example), or None; nβ = n·β.
        nbeta: the product nβ directly, or None.

    Returns:
        nβ as a finite float > 0: ``nbeta`` if given, else ``n * beta`` if given, else
        :func:`default_nbeta` (n/log n).

    Raises:
        ValueError: both ``beta`` and ``nbeta`` given, or the given one is not a finite number > 0.
    """
    if beta is not None and nbeta is not None:
        raise ValueError(f"beta and nbeta: give at most one of them, got beta={beta} and nbeta={nbeta}")
    if nbeta is not None:
        return real("nbeta", nbeta, "a finite number > 0", lambda v: v > 0)
    if beta is not None:
        return n * real("beta", beta, "a finite number > 0", lambda v: v > 0)
    return default_nbeta(n)


def _static(**kwargs: Any) -> Any:
    """A dataclass field that is part of a pytree's static structure (not a leaf)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def _register_dataclass_pytree(cls: type) -> type:
    """Register a dataclass as a pytree from its fields: fields marked ``_static()`` are aux
    data, the others leaves (with their names as key paths). Unflattening bypasses
    ``__init__``, which validates and casts user input."""
    fields = dataclasses.fields(cls)
    leaves = tuple(f.name for f in fields if not f.metadata.get("static"))
    static = tuple(f.name for f in fields if f.metadata.get("static"))

    def flatten_with_keys(obj):
        return [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaves], tuple(getattr(obj, n) for n in static)

    def flatten(obj):
        return [getattr(obj, n) for n in leaves], tuple(getattr(obj, n) for n in static)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        obj.__dict__.update(zip(leaves, children))
        obj.__dict__.update(zip(static, aux))
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class DrawTerms(NamedTuple):
    """What every kernel records at each kept draw w, besides its loss (:meth:`LocalPosterior.draw_terms`).

    Attributes:
        virial: (num_groups,) group means of v_i·∂_iU, v = w − w* (the self-check; 1 in
            expectation under the posterior).
        distance_sq: scalar ‖w − w*‖² over the sampled coordinates (the basin-exit check
            compares it with the localizer's scale d/γ and looks for a trend over the draws).
        observables: (num_observables,) L_k(w) − L_k(w*), the mean loss on each observable
            dataset k (the data-refined LLC), or None when the posterior has no observables.
    """

    virial: jax.Array
    distance_sq: jax.Array
    observables: jax.Array | None


def _at_wstar(posterior: LocalPosterior) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(L_n(w*), ‖g‖², gᵀHg, (num_observables,) L_k(w*)) with g = ∇L_n(w*), H the Hessian there
    and L_k the observables' losses: what the posterior needs at w*, in one program."""
    grad_fn = jax.grad(posterior.full_loss)
    loss, g = jax.value_and_grad(posterior.full_loss)(posterior.w_star)
    hg = jax.jvp(grad_fn, (posterior.w_star,), (g,))[1]
    observed = [posterior.mean_loss(posterior.w_star, d) for d in posterior.observable_data]
    observed = jnp.stack(observed) if observed else jnp.zeros((0,), posterior.dtype)
    return loss, jnp.dot(g, g), jnp.dot(g, hg), observed


_AT_WSTAR = jax.jit(_at_wstar)


@_register_dataclass_pytree
@dataclasses.dataclass(init=False, eq=False, repr=False)
class LocalPosterior:
    """Tempered posterior localized at w*, on flat parameter vectors.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over ``batch`` (mean
            negative log-likelihood; plain MSE is the Gaussian NLL with σ² = 1/2 up to a constant).
        params: w*, any pytree of float arrays. Cast to the run dtype.
        data: any pytree of arrays sharing a leading axis of length n >= 2. Floating leaves are
            cast to the run dtype.
        beta: inverse temperature β (nβ = n·β). Default β* = 1/log n.
        nbeta: nβ directly (what the literature reports). Give at most one of beta / nbeta.
        gamma: localization strength γ >= 0.
        chunk_size: the full-batch loss L_n is evaluated in chunks of this many examples so
            memory stays bounded for large n.
        mask: restrict sampling to some weights (the weight-restricted LLC). One of:
            a pytree of booleans shaped like ``params`` (leaves broadcastable to each
            parameter's shape, or Python bools); for dict params, a *prefix* dict naming
            subtrees, where a key left out is False and a bool covers its whole subtree (e.g.
            ``{"params": {"dense1": True}}`` samples the layer dense1 only); or a predicate
            ``mask(path, leaf) -> bool`` called once per parameter leaf with the leaf's path as
            the string ``jax.tree_util.keystr`` gives (e.g. ``"['params']['dense1']['kernel']"``;
            so ``lambda path, leaf: "dense1" in path``). Unselected weights stay at w*; the
            localizer acts on the selected ones only.
        observables: ``{name: dataset}``, datasets with the structure of ``data`` (any number
            of examples, at least one) on which the mean loss L_k(w) = loss_fn(w, dataset_k) is
            recorded at every kept draw (the full dataset, in chunks of ``chunk_size``), for the
            data-refined LLC λ̂_k = nβ·E_p[L_k(w) − L_k(w*)]. They do not change the posterior.

    The constructor validates and casts; the result is a dataclass pytree whose leaves are the
    arrays below and whose static part is the loss function, the parameter layout, n, the chunk
    size and the group names. L_n(w*) and the gradient quantities at w* are computed once, in
    one compiled program, at construction.
    """

    w_star: jax.Array  # (d,) the sampled coordinates of w*
    data: Any
    nbeta: jax.Array
    gamma: jax.Array
    loss_at_wstar: jax.Array  # L_n(w*)
    grad_sq_at_wstar: jax.Array  # ‖∇L_n(w*)‖²
    grad_hess_grad_at_wstar: jax.Array  # gᵀHg at w*, g = ∇L_n(w*)
    w_full: jax.Array | None  # every coordinate of w* when masked, else None
    free_idx: jax.Array | None  # flat indices of the sampled coordinates when masked
    group_ids: jax.Array  # (d,) parameter-leaf group of each sampled coordinate
    group_sizes: jax.Array  # (num_groups,)
    observable_data: tuple[Any, ...]  # the observable datasets, cast to the run dtype
    observable_loss_at_wstar: jax.Array  # (num_observables,) L_k(w*)
    loss_fn: LossFn = _static()
    spec: FlatSpec = _static()
    n: int = _static()
    chunk_size: int = _static()
    group_names: tuple[str, ...] = _static()
    observable_names: tuple[str, ...] = _static()

    def __init__(
        self,
        loss_fn: LossFn,
        params: Any,
        data: Any,
        *,
        beta: float | None = None,
        nbeta: float | None = None,
        gamma: float = 1.0,
        chunk_size: int | None = None,
        mask: Any = None,
        observables: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(loss_fn):
            raise TypeError(
                f"loss_fn: expected a callable loss_fn(params, batch) -> scalar, got {type(loss_fn).__name__}"
            )
        dtype = float_dtype()
        w_full, spec = ravel(params, dtype)  # TypeError naming params for non-float leaves
        if not bool(jnp.all(jnp.isfinite(w_full))):  # checked after the cast to the run dtype
            raise ValueError(f"params: w* contains NaN or Inf (as {dtype.name}); expected finite values")
        free_idx = None if mask is None else jnp.asarray(_mask_indices(mask, params, spec))
        w_star = w_full if free_idx is None else w_full[free_idx]
        n = _leading_length(data)
        if n < 2:
            raise ValueError(f"data: expected n >= 2 examples along the leading axis, got n={n}")
        data = _cast_data(data, dtype)
        gamma_value = non_negative_float("gamma", gamma)
        chunk = (
            DEFAULT_CHUNK_SIZE
            if chunk_size is None
            else integer("chunk_size", chunk_size, minimum=1, expected="a positive integer (or None)")
        )
        self.loss_fn = loss_fn
        self.spec = spec
        self.n = n
        self.chunk_size = chunk
        self.w_star = w_star
        self.w_full = w_full if free_idx is not None else None
        self.free_idx = free_idx
        names, ids = _parameter_groups(params, spec, None if free_idx is None else np.asarray(free_idx))
        self.group_names = names
        self.group_ids = jnp.asarray(ids, jnp.int32)
        self.group_sizes = jnp.asarray(np.bincount(ids, minlength=len(names)), jnp.int32)
        self.data = data
        self.nbeta = jnp.asarray(resolve_nbeta(n, beta, nbeta), dtype)
        self.gamma = jnp.asarray(gamma_value, dtype)
        self._check_loss_output()
        zero = jnp.asarray(0.0, dtype)
        self.loss_at_wstar = self.grad_sq_at_wstar = self.grad_hess_grad_at_wstar = zero
        self.observable_names, self.observable_data = _observable_datasets(observables, data, dtype)
        for name, d in zip(self.observable_names, self.observable_data):
            self._check_loss_output(d, f"observables[{name!r}]")
        self.observable_loss_at_wstar = jnp.zeros((len(self.observable_names),), dtype)
        at_wstar = _AT_WSTAR(self)
        self.loss_at_wstar, self.grad_sq_at_wstar, self.grad_hess_grad_at_wstar = at_wstar[:3]
        self.observable_loss_at_wstar = at_wstar[3]
        if not bool(jnp.isfinite(self.loss_at_wstar)):
            raise ValueError(
                f"loss_fn: the loss at w* (params) is {float(self.loss_at_wstar)}; expected a finite value"
            )
        bad = [
            k for k, v in zip(self.observable_names, np.asarray(self.observable_loss_at_wstar)) if not np.isfinite(v)
        ]
        if bad:
            raise ValueError(f"observables: the loss at w* is not finite on {bad}; expected finite values")

    def replace(self, **leaves: Any) -> LocalPosterior:
        """A copy with ``nbeta`` and/or ``gamma`` replaced (e.g. inside a vmapped sweep).

        Nothing else can be replaced: new data change n and L_n(w*), which the posterior computed
        at construction, so they need a new LocalPosterior.

        Args:
            **leaves: ``nbeta`` (the product nβ, not β) and/or ``gamma`` (γ). Stored as given,
                without validation or casting (so traced values work); pass scalars in the run
                dtype, e.g. ``jnp.asarray(x, posterior.dtype)``.

        Returns:
            A new LocalPosterior sharing everything else with this one. The gradient quantities
            at w* do not depend on nβ or γ, so :meth:`stationarity` stays valid.

        Raises:
            ValueError: a name other than ``nbeta`` or ``gamma``.
        """
        obj = object.__new__(type(self))
        obj.__dict__.update(self.__dict__)
        for name, value in leaves.items():
            if name not in ("nbeta", "gamma"):
                raise ValueError(
                    f"{name}: not a replaceable leaf of LocalPosterior (only nbeta and gamma; for new data or "
                    "params, construct a new LocalPosterior, which recomputes n and L_n(w*))"
                )
            setattr(obj, name, value)
        return obj

    # -- basic quantities ------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d, the number of sampled parameters (the selected ones when a mask is given)."""
        return int(self.w_star.shape[0])

    @property
    def num_sampled(self) -> int:
        """The number of sampled weights, not counting padding coordinates (see :meth:`padded`);
        equal to :attr:`dim` otherwise. A host-side int (not for use under jit)."""
        return int(np.sum(np.asarray(self.group_sizes)))

    def padded(self, dim: int, group_names: tuple[str, ...]) -> LocalPosterior:
        """This masked posterior on ``dim`` >= d coordinates with the parameter groups ``group_names``,
        so that posteriors of different masks share one shape and can be stacked (vmapped).

        The d sampled coordinates come first; the ``dim − d`` padding coordinates are not written
        into the parameters (the loss does not see them: ``unravel`` drops them), so under p they
        are independent N(0, 1/γ) variables, whatever the kernel. They belong to no group and are
        left out of the virial terms, of ‖w − w*‖² and of :attr:`num_sampled`; λ̂ is unchanged
        in distribution (the sampled coordinates' law is the same).

        Args:
            dim: the common number of coordinates (>= :attr:`dim`).
            group_names: the common group names, containing every name of this posterior's
                ``group_names`` (groups with no sampled weight here get size 0).

        Returns:
            A new LocalPosterior sharing loss, data and w* with this one.

        Raises:
            ValueError: the posterior is not masked, ``dim`` is smaller than d, or a group is
                missing from ``group_names``.
        """
        if self.free_idx is None:
            raise ValueError("padded: only a masked posterior (mask=...) can be padded")
        extra = int(dim) - self.dim
        if extra < 0:
            raise ValueError(f"padded: dim = {dim} is smaller than the {self.dim} sampled coordinates")
        missing = [g for g in self.group_names if g not in group_names]
        if missing:
            raise ValueError(f"padded: group_names lacks {missing}")
        index = np.array([group_names.index(g) for g in self.group_names], np.int32)
        ids = np.concatenate([index[np.asarray(self.group_ids)], np.full(extra, len(group_names), np.int32)])
        sizes = np.bincount(ids[ids < len(group_names)], minlength=len(group_names))
        obj = object.__new__(type(self))
        obj.__dict__.update(self.__dict__)
        obj.w_star = jnp.concatenate([self.w_star, jnp.zeros((extra,), self.dtype)])
        out_of_range = self.w_full.shape[0]  # scatter with mode="drop" skips these
        obj.free_idx = jnp.concatenate([self.free_idx, jnp.full((extra,), out_of_range, self.free_idx.dtype)])
        obj.group_ids = jnp.asarray(ids, jnp.int32)
        obj.group_sizes = jnp.asarray(sizes, jnp.int32)
        obj.group_names = tuple(group_names)
        return obj

    @property
    def dtype(self) -> jnp.dtype:
        """The run dtype (float64 with JAX_ENABLE_X64, else float32), that of w*."""
        return self.w_star.dtype

    def unravel(self, w: jax.Array) -> Any:
        """Flat (sampled) vector -> parameter pytree; masked-out weights stay at w*.

        Args:
            w: (d,) flat vector of the sampled coordinates.

        Returns:
            A pytree with the structure and leaf shapes of ``params``, in ``w``'s dtype.
        """
        if self.free_idx is None:
            return self.spec.unravel(w)
        return self.spec.unravel(self.w_full.at[self.free_idx].set(w, mode="drop"))  # padding: dropped

    def positions_tree(self, flat: np.ndarray) -> Any:
        """Sampled flat positions (..., d) on the host -> parameter pytree of numpy arrays with
        the same leading axes; masked-out weights are filled in at w*.

        Args:
            flat: (..., d) array of sampled flat positions (e.g. (chains, draws, d)).

        Returns:
            A pytree like ``params`` whose leaves are numpy arrays of shape (..., leaf shape…).
        """
        flat = np.asarray(flat)[..., : self.num_sampled]  # without padding coordinates (see padded)
        if self.free_idx is not None:
            full = np.broadcast_to(np.asarray(self.w_full), flat.shape[:-1] + self.w_full.shape).copy()
            full[..., np.asarray(self.free_idx)[: self.num_sampled]] = flat
            flat = full
        return self.spec.unravel_numpy(flat)

    def _check_loss_output(self, data: Any = None, what: str = "data") -> None:
        data = self.data if data is None else data
        batch = jax.tree.map(lambda x: x[:2], data)
        try:
            out = jax.eval_shape(self.loss_fn, self.unravel(self.w_star), batch)
        except Exception as err:  # re-raised with context
            raise ValueError(f"loss_fn: calling loss_fn(params, batch) on 2 examples of {what} failed: {err}") from err
        if not hasattr(out, "shape") or out.shape != ():
            raise ValueError(
                f"loss_fn: expected a scalar (the mean loss over the batch), got shape {getattr(out, 'shape', type(out))}"
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise ValueError(f"loss_fn: expected a floating-point scalar, got dtype {out.dtype}")

    def batch_loss(self, w: jax.Array, batch: Any) -> jax.Array:
        """Mean loss over ``batch`` at flat w, in the run dtype.

        Args:
            w: (d,) flat vector of the sampled coordinates.
            batch: a pytree of arrays with the structure of ``data`` (any leading length).

        Returns:
            Scalar ``loss_fn(unravel(w), batch)`` cast to the run dtype.
        """
        return jnp.asarray(self.loss_fn(self.unravel(w), batch), self.dtype)

    def full_loss(self, w: jax.Array) -> jax.Array:
        """L_n(w): the mean loss over all n examples, in chunks of ``chunk_size``.

        Args:
            w: (d,) flat vector of the sampled coordinates.

        Returns:
            Scalar L_n(w), the mean over all n examples (see :meth:`mean_loss`).
        """
        return self.mean_loss(w, self.data)

    def mean_loss(self, w: jax.Array, data: Any) -> jax.Array:
        """The mean loss over every example of ``data`` at flat w, in chunks of ``chunk_size``.

        Chunks run in a lax.scan whose body is rematerialised (jax.checkpoint), so neither the
        forward nor the backward pass holds more than one chunk's activations.

        Args:
            w: (d,) flat vector of the sampled coordinates.
            data: a pytree of arrays with the structure of ``data`` (e.g. the sampling data or an
                observable dataset).

        Returns:
            Scalar mean loss over all of ``data``'s examples (a remainder chunk is weighted by its
            size).
        """
        n, chunk = jax.tree.leaves(data)[0].shape[0], self.chunk_size
        if n <= chunk:
            return self.batch_loss(w, data)
        num_chunks, rest = divmod(n, chunk)
        head = jax.tree.map(lambda x: x[: num_chunks * chunk].reshape((num_chunks, chunk) + x.shape[1:]), data)

        @jax.checkpoint
        def chunk_sum(batch):
            return self.batch_loss(w, batch) * chunk

        def body(total, batch):
            return total + chunk_sum(batch), None

        total, _ = jax.lax.scan(body, jnp.zeros((), self.dtype), head)
        if rest:
            tail = jax.tree.map(lambda x: x[num_chunks * chunk :], data)
            total = total + self.batch_loss(w, tail) * rest
        return total / n

    def excess_loss(self, w: jax.Array, batch: Any | None = None) -> jax.Array:
        """L_B(w) − L_n(w*) on ``batch`` (an unbiased estimate of L_n(w) − L_n(w*)); exact full
        L_n(w) − L_n(w*) when ``batch`` is None.

        Args:
            w: (d,) flat vector of the sampled coordinates.
            batch: a minibatch pytree like ``data``, or None for the full batch.

        Returns:
            Scalar excess loss (not multiplied by nβ).
        """
        loss = self.full_loss(w) if batch is None else self.batch_loss(w, batch)
        return loss - self.loss_at_wstar

    def localizer(self, w: jax.Array) -> jax.Array:
        """(γ/2)·‖w − w*‖².

        Args:
            w: (d,) flat vector of the sampled coordinates.

        Returns:
            Scalar (γ/2)·‖w − w*‖² over the sampled coordinates.
        """
        v = w - self.w_star
        return 0.5 * self.gamma * jnp.dot(v, v)

    # -- log-densities ---------------------------------------------------------------
    def logdensity(self, w: jax.Array) -> jax.Array:
        """Full-batch log p(w) = −nβ (L_n(w) − L_n(w*)) − (γ/2)‖w − w*‖² (up to a constant).

        Args:
            w: (d,) flat vector of the sampled coordinates.

        Returns:
            Scalar unnormalised log-density (0 at w*).
        """
        return -self.nbeta * (self.full_loss(w) - self.loss_at_wstar) - self.localizer(w)

    def logdensity_minibatch(self, w: jax.Array, batch: Any) -> jax.Array:
        """Unbiased minibatch estimate of :meth:`logdensity` (the batch mean loss replaces L_n).

        Args:
            w: (d,) flat vector of the sampled coordinates.
            batch: a minibatch pytree like ``data`` (e.g. from :meth:`sample_batch`).

        Returns:
            Scalar −nβ (L_B(w) − L_n(w*)) − (γ/2)‖w − w*‖².
        """
        return -self.nbeta * (self.batch_loss(w, batch) - self.loss_at_wstar) - self.localizer(w)

    def excess_loss_from_logdensity(self, w: jax.Array, logdensity: jax.Array) -> jax.Array:
        """L_n(w) − L_n(w*) recovered from a full-batch log-density value at w (no extra pass).

        Args:
            w: (d,) flat vector of the sampled coordinates.
            logdensity: the value of :meth:`logdensity` at ``w``.

        Returns:
            Scalar −(logdensity + (γ/2)‖w − w*‖²)/nβ.
        """
        return -(logdensity + self.localizer(w)) / self.nbeta

    def potential_grad(self, w: jax.Array, batch: Any | None = None) -> jax.Array:
        """∇U(w) = nβ∇L(w) + γ(w − w*), U = −log p: full batch, or the unbiased minibatch estimate.

        Args:
            w: (d,) flat vector of the sampled coordinates.
            batch: a minibatch pytree like ``data`` (L = L_B), or None for the full batch (L = L_n).

        Returns:
            (d,) gradient of the potential U at ``w``.
        """
        logp = self.logdensity if batch is None else (lambda x: self.logdensity_minibatch(x, batch))
        return -jax.grad(logp)(w)

    def virial_terms(self, w: jax.Array, grad_potential: jax.Array) -> jax.Array:
        """Per-group means of v_i·∂_iU at one point, v = w − w*: shape (num_groups,).

        Stein's identity for p ∝ exp(−U) gives E_p[v_i ∂_iU] = 1 for every sampled coordinate
        (integrate ∂_i(v_i p) = p − v_i ∂_iU p over R^d; valid for γ > 0, where the tails are
        Gaussian), so each group mean has expectation 1 under the exact posterior. ``grad_potential``
        is ∂U at w (a minibatch estimate is fine: it is unbiased when the batch is drawn
        independently of w). Groups are the parameter pytree's leaves (``group_names``; their
        sampled sizes are ``group_sizes``).

        Args:
            w: (d,) flat vector of the sampled coordinates.
            grad_potential: (d,) ∇U at ``w`` (e.g. from :meth:`potential_grad`).

        Returns:
            (num_groups,) mean of (w_i − w*_i)·∂_iU over each group's sampled coordinates.
        """
        t = (w - self.w_star) * grad_potential
        sums = jax.ops.segment_sum(t, self.group_ids, num_segments=len(self.group_names))
        return sums / jnp.maximum(self.group_sizes, 1).astype(t.dtype)  # a group may be empty (padded)

    def draw_terms(self, w: jax.Array, grad_potential: jax.Array) -> DrawTerms:
        """What a kernel records at a kept draw w besides its loss: the virial terms
        (:meth:`virial_terms`), ‖w − w*‖², and the excess loss on each observable dataset.

        Args:
            w: (d,) flat vector of the sampled coordinates.
            grad_potential: (d,) ∇U at ``w`` (full batch or an unbiased minibatch estimate).

        Returns:
            A :class:`DrawTerms`; its ``observables`` is None when the posterior has none (each
            observable costs one pass over its dataset per draw).
        """
        v = w - self.w_star
        sampled = self.group_ids < len(self.group_names)  # False only on padding coordinates
        observables = None
        if self.observable_names:
            losses = jnp.stack([self.mean_loss(w, d) for d in self.observable_data])
            observables = losses - self.observable_loss_at_wstar
        distance_sq = jnp.sum(jnp.where(sampled, v * v, 0))
        return DrawTerms(self.virial_terms(w, grad_potential), distance_sq, observables)

    def sample_batch(self, key: jax.Array, batch_size: int) -> Any:
        """A minibatch of ``batch_size`` examples drawn uniformly with replacement.

        Args:
            key: a JAX PRNG key.
            batch_size: number of examples to draw (a static Python int).

        Returns:
            A pytree like ``data`` whose leaves have leading length ``batch_size``.
        """
        idx = jax.random.randint(key, (batch_size,), 0, self.n)
        return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), self.data)

    def stationarity(self) -> tuple[jax.Array, jax.Array]:
        """(‖g‖, estimated shift of E[λ̂] caused by g), g = ∇L_n(w*).

        For L − L* = gᵀv + ½vᵀHv the posterior mean moves to μ = −nβP⁻¹g (P = nβH + γI) and
        E[λ̂] shifts by −½nβ²(gᵀP⁻¹g + γ gᵀP⁻²g). P is replaced by its Rayleigh quotient along g,
        p = gᵀPg/‖g‖² (from gᵀHg, one Hessian-vector product computed at construction); by
        Cauchy–Schwarz this never overstates gᵀP⁻¹g's size, so it is a conservative (small)
        estimate of the shift. Valid for the current nβ and γ (also after ``replace``).

        Returns:
            A pair of scalars: ‖∇L_n(w*)‖, and the estimated shift of E[λ̂] (0 when g = 0; in λ̂
            units, i.e. already multiplied by nβ).
        """
        gg = self.grad_sq_at_wstar
        p = self.nbeta * self.grad_hess_grad_at_wstar / jnp.where(gg > 0, gg, 1) + self.gamma
        p = jnp.maximum(p, jnp.finfo(self.dtype).tiny)
        shift = -0.5 * self.nbeta**2 * gg * (1 / p + self.gamma / p**2)
        return jnp.sqrt(gg), jnp.where(gg > 0, shift, 0.0)
