"""Chains split over devices.

Chains are independent, so with several devices the chains are cut into equal blocks and each
device runs the *same* single-device program on its block (dispatched asynchronously, so the
devices work at the same time); the blocks are then concatenated in chain order. Every kernel
derives chain c's randomness from ``fold_in(key, c)`` with the *global* chain index (each
block's program is given the index of its first chain, ``first_chain``), so a key gives the same draws whether the chains run on one device or on
several. When ``num_chains`` is not a multiple of the device count the last block is padded with
extra chains that are run and dropped.

Why not one SPMD program (``jax.shard_map``/``pmap``)? XLA compiles multi-device programs
slightly differently from single-device ones; the last-bit differences are amplified by the step
size adaptation of HMC/NUTS into different trajectories, so "same key, same result" would only
hold statistically. Running the single-device program per device keeps it exact (tested).
The price is one compilation per device (done in parallel threads).

Contract for a kernel's :class:`~lambda_hat.kernels.KernelOutput`: every array has a leading chain
axis, except 0-d arrays in ``extra`` (settings shared by all chains).

Several hosts: call ``jax.distributed.initialize()`` in every process before anything else and
call ``sample`` with the same arguments in every process; each process runs the blocks of its own
devices and the per-chain results are gathered (``multihost_utils.process_allgather``) so every
process returns the full result. See docs/api.md.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def resolve_devices(devices: Any) -> list[jax.Device]:
    """``None`` = every device (``jax.devices()``); an int k = the first k; or a list of devices.

    Returned in (process, id) order, the order in which chain blocks are assigned.

    Args:
        devices: None, an int k in [1, len(jax.devices())] (a Python or NumPy integer), or a
            non-empty iterable of distinct ``jax.Device`` objects.

    Returns:
        The chosen devices, sorted by (``process_index``, ``id``).

    Raises:
        TypeError: if ``devices`` is a bool (Python or NumPy), another non-iterable, or holds
            non-devices.
        ValueError: if the int is out of range or a device is listed twice.
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (bool, np.bool_)):
        raise TypeError(f"devices: expected None, an int or a list of jax devices, got {devices!r}")
    elif isinstance(devices, (int, np.integer)):
        devices = int(devices)
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices: expected an int in [1, {len(available)}] (jax.devices() has {len(available)}), got {devices}"
            )
        chosen = list(available[:devices])
    else:
        try:
            chosen = list(devices)
        except TypeError:
            raise TypeError(
                f"devices: expected None, an int or a list of jax devices, got {type(devices).__name__}"
            ) from None
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError(f"devices: expected a non-empty list of jax devices (e.g. jax.devices()), got {devices!r}")
        if len({d.id for d in chosen}) != len(chosen):
            raise ValueError(f"devices: the same device is listed twice in {chosen}")
    return sorted(chosen, key=lambda d: (d.process_index, d.id))


def padded_chains(num_chains: int, num_devices: int) -> int:
    """The smallest multiple of num_devices that is >= num_chains.

    Args:
        num_chains: the number of chains asked for.
        num_devices: the number of devices they are split over.

    Returns:
        The number of chains run, padding included.
    """
    return math.ceil(num_chains / num_devices) * num_devices


def block_program(run: Callable[..., Any], static: dict[str, Any]) -> Callable[..., Any]:
    """``fn(key, posterior, first_chain)``: ``run`` for one block of chains whose first global
    chain index is the traced int ``first_chain`` (passed on to the kernel's run).

    Args:
        run: the kernel's ``run(key, posterior, *, first_chain, **static)``.
        static: the keyword arguments passed to every call of ``run`` (``num_chains``,
            ``num_draws``, the kernel's options, ...).

    Returns:
        ``fn(key, posterior, first_chain)``, calling ``run`` with ``static``; ready for ``jax.jit``.
    """

    def fn(key, posterior, first_chain):
        return run(key, posterior, first_chain=first_chain, **static)

    return fn


class Block(NamedTuple):
    device: jax.Device
    first_chain: int
    compiled: Any


class ChainPlan(NamedTuple):
    """Compiled per-device programs and how their blocks map to chains."""

    blocks: tuple[Block, ...]  # this process's blocks, in chain order
    num_chains: int
    multiprocess: bool


def compile_plan(
    run: Callable[..., Any], static: dict[str, Any], key: jax.Array, posterior: Any, devices: Sequence[jax.Device]
) -> ChainPlan:
    """Compile ``run`` (with num_chains = block size) for each local device, in parallel threads.

    Args:
        run: the kernel's ``run`` (see :func:`block_program`).
        static: its static keyword arguments, with ``num_chains`` the total number of chains
            (each block is compiled for ``padded_chains(num_chains, len(devices)) // len(devices)``).
        key: the PRNG key the program will be called with (it fixes the argument's type and
            placement for compilation).
        posterior: the posterior pytree the program will be called with (likewise).
        devices: every device the chains are split over, in block order (as returned by
            :func:`resolve_devices`); only this process's devices are compiled for.

    Returns:
        A :class:`ChainPlan` with one compiled block per local device, in chain order.
    """
    num_chains = static["num_chains"]
    block = padded_chains(num_chains, len(devices)) // len(devices)
    fn = jax.jit(block_program(run, {**static, "num_chains": block}))
    me = jax.process_index()
    mine = [(i, d) for i, d in enumerate(devices) if d.process_index == me]

    def compile_for(item):
        i, device = item
        args = jax.device_put((key, posterior, jnp.int32(i * block)), device)
        return Block(device, i * block, fn.lower(*args).compile())

    if len(mine) == 1:
        blocks = [compile_for(mine[0])]
    else:
        with concurrent.futures.ThreadPoolExecutor(len(mine)) as pool:
            blocks = list(pool.map(compile_for, mine))
    return ChainPlan(tuple(blocks), num_chains, len({d.process_index for d in devices}) > 1)


def run_plan(plan: ChainPlan, key: jax.Array, posterior: Any) -> Any:
    """Run every block (asynchronously, all devices at once) and join them in chain order.

    Args:
        plan: the compiled blocks, from :func:`compile_plan`.
        key: the PRNG key; every block gets the same key (chain c derives its randomness from
            ``fold_in(key, c)`` with the global index c).
        posterior: the posterior pytree, copied to each block's device.

    Returns:
        The kernel's output pytree with numpy leaves, sliced to ``num_chains`` chains (0-d leaves
        are taken from the first block).
    """
    outs = [b.compiled(*jax.device_put((key, posterior, jnp.int32(b.first_chain)), b.device)) for b in plan.blocks]
    if len(outs) == 1 and not plan.multiprocess:
        joined = jax.tree.map(np.asarray, jax.block_until_ready(outs[0]))
    else:
        joined = jax.tree.map(
            lambda *xs: np.asarray(xs[0]) if np.ndim(xs[0]) == 0 else np.concatenate([np.asarray(x) for x in xs]), *outs
        )
    if plan.multiprocess:  # every process gets the blocks of all processes, in process order
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(joined)
        joined = jax.tree.map(
            lambda g, x: np.asarray(x) if np.ndim(x) == 0 else np.asarray(g).reshape((-1,) + np.shape(x)[1:]),
            gathered,
            joined,
        )
    return jax.tree.map(lambda x: x if np.ndim(x) == 0 else x[: plan.num_chains], joined)
