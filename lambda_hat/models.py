"""Adapters that turn model objects into (loss_fn, params) pairs that ``sample`` understands.

flax linen params, nnx ``State`` objects, equinox-style pytrees and flat arrays are already
pytrees of arrays and need nothing. A flax nnx *Module* is split into its ``nnx.Param``
variables (sampled) and everything else (batch statistics, RNG counters: held fixed); the user's
``loss_fn`` receives the merged module, exactly as they wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


class _NnxLoss:
    """loss(params_state, batch) = user_loss(nnx.merge(graphdef, params_state, rest), batch).

    Equal (and equally hashed) when built from the same loss, graph and an empty rest, so that
    repeated calls reuse the compiled program."""

    def __init__(self, loss_fn: Callable, graphdef: Any, rest: Any) -> None:
        self.loss_fn, self.graphdef, self.rest = loss_fn, graphdef, rest
        self._key = (loss_fn, graphdef) if not jax.tree.leaves(rest) else (loss_fn, graphdef, id(self))

    def __call__(self, params_state: Any, batch: Any):
        from flax import nnx

        return self.loss_fn(nnx.merge(self.graphdef, params_state, self.rest), batch)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NnxLoss) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


def adapt_model(loss_fn: Callable, params: Any) -> tuple[Callable, Any]:
    """(loss_fn, params) ready for LocalPosterior: nnx Modules are split, everything else passes.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, written for ``params`` as given (for an nnx
            Module, it receives the module).
        params: w*: a pytree of arrays, or a flax nnx Module.

    Returns:
        ``(loss_fn, params)`` unchanged for a pytree; for an nnx Module, a loss on its
        ``nnx.Param`` state (merging the held-fixed rest back in before calling ``loss_fn``) and
        that ``nnx.Param`` state.
    """
    from flax import nnx

    if isinstance(params, nnx.Module):
        graphdef, params_state, rest = nnx.split(params, nnx.Param, ...)
        return _NnxLoss(loss_fn, graphdef, rest), params_state
    return loss_fn, params
