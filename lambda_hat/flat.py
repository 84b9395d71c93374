"""Flat-vector view of a parameter pytree.

Samplers work on a flat vector w ∈ R^d in ``jax.flatten_util.ravel_pytree`` order. Unlike
``ravel_pytree``, :class:`FlatSpec` is hashable and comparable, so a posterior that carries it
as static metadata hits JAX's compilation cache on a second call with the same shapes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class FlatSpec(NamedTuple):
    """Tree structure, leaf shapes and leaf dtypes of a parameter pytree (hashable)."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def size(self) -> int:
        """d, the total number of scalars over all leaves."""
        return int(sum(math.prod(s) for s in self.shapes))

    def split_points(self) -> list[int]:
        """Offsets in the flat vector where each leaf after the first begins.

        Returns:
            The cumulative leaf sizes without the last (one offset per leaf after the first), as
            Python ints, ready for ``split``.
        """
        return np.cumsum([math.prod(shape) for shape in self.shapes])[:-1].tolist()

    def unravel(self, flat: jax.Array) -> Any:
        """Flat vector (d,) -> pytree with the original shapes, in the flat vector's dtype.

        Args:
            flat: (d,) flat vector in ``ravel_pytree`` order.

        Returns:
            The pytree with the recorded structure and leaf shapes (leaves in ``flat``'s dtype,
            not the recorded ``dtypes``).
        """
        # jnp.split, not one slice per leaf: its transpose is a single concatenate, where
        # per-leaf slices transpose to a pad per leaf plus adds (1.4× slower SGLD steps on a
        # 337-parameter MLP, benchmarks/floor.py)
        parts = jnp.split(flat, self.split_points())
        return jax.tree.unflatten(self.treedef, [jnp.reshape(p, s) for p, s in zip(parts, self.shapes)])

    def unravel_numpy(self, flat: np.ndarray) -> Any:
        """Host-side batched unravel: (..., d) numpy array -> pytree of (..., leaf shape…) arrays.

        Args:
            flat: (..., d) numpy array; the last axis is the flat vector, the others are kept.

        Returns:
            The pytree with the recorded structure; each leaf a numpy array of shape
            (..., leaf shape…) in ``flat``'s dtype.
        """
        parts = np.split(flat, self.split_points(), axis=-1)
        return jax.tree.unflatten(self.treedef, [p.reshape(flat.shape[:-1] + s) for p, s in zip(parts, self.shapes)])


def float_dtype() -> jnp.dtype:
    """The run dtype: float64 when JAX_ENABLE_X64 is on, otherwise float32.

    Returns:
        ``jnp.dtype("float64")`` or ``jnp.dtype("float32")``, read from ``jax.config`` at call time.
    """
    return jnp.dtype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


def ravel(params: Any, dtype: Any = None) -> tuple[jax.Array, FlatSpec]:
    """Ravel a pytree of float arrays into (flat vector in ``dtype``, FlatSpec).

    Raises TypeError naming ``params`` when a leaf is not a floating-point array.

    Args:
        params: a non-empty pytree of floating-point arrays.
        dtype: dtype of the flat vector; None (default) = the run dtype (:func:`float_dtype`).

    Returns:
        ``(flat, spec)``: the (d,) concatenation of the raveled leaves cast to ``dtype``, and the
        :class:`FlatSpec` recording the tree structure, leaf shapes and original leaf dtypes.

    Raises:
        ValueError: ``params`` has no leaves.
        TypeError: a leaf is not a floating-point array.
    """
    dtype = jnp.dtype(dtype or float_dtype())
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:
        raise ValueError("params: expected a pytree with at least one float array, got an empty tree")
    shapes, dtypes, flat = [], [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(
                f"params: every leaf must be a floating-point array; leaf "
                f"{jax.tree_util.keystr(path) or '<root>'} has dtype {arr.dtype}. "
                + (
                    "Cast integer parameters to float first."
                    if jnp.issubdtype(arr.dtype, jnp.integer)
                    else "Complex, bool, string and object leaves cannot be sampled."
                )
            )
        shapes.append(tuple(int(s) for s in arr.shape))
        dtypes.append(str(arr.dtype))
        flat.append(jnp.ravel(jnp.asarray(arr, dtype=dtype)))
    spec = FlatSpec(treedef, tuple(shapes), tuple(dtypes))
    return jnp.concatenate(flat), spec
