"""Several accelerators: a 1-D device mesh over the points axis and arrays sharded along it.

Every per-point array (features, weights, residuals) of n points is split into D equal contiguous
blocks, one per device, with ``NamedSharding(mesh, PartitionSpec("points"))``; a reduction over the points
(Σ_x w_x r_x², Jᵀ u) then runs as local sums plus one all-reduce (XLA's SPMD partitioner inserts the
collective), and nothing n-sized is gathered on one device. n is padded to a multiple of D (and of
``multiple``) with copies of the first row, which the caller gives weight zero, so sums over the padded
arrays equal sums over the n true points and means divide by the true n.

The same code runs on one GPU, several GPUs, or CPU "devices" forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (set before jax is imported): the CPU form is a
correctness check, not a speed-up (the forced devices share the same cores).

>>> import numpy as np
>>> mesh = device_mesh(1)
>>> x = shard_points(np.arange(5.0), mesh, length=padded_length(5, mesh))
>>> x.shape
(5,)
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "device_mesh", "padded_length", "points_sharding", "shard_points", "local_blocks",
           "describe_mesh", "parse_devices", "per_device", "POINTS", "REPLICATED"]

#: name of the mesh axis the points are split along
AXIS = "points"
#: partition specs: split along the points axis / the same on every device
POINTS = PartitionSpec(AXIS)
REPLICATED = PartitionSpec()


def parse_devices(devices):
    """``devices`` as given on a command line or in a config (None, "all", an int or its string) ->
    None, "all" or a positive int; anything else raises naming the argument."""
    if devices is None or devices == "all":
        return devices
    if isinstance(devices, str):
        try:
            devices = int(devices)
        except ValueError:
            raise ValueError(f"devices: expected a positive integer or 'all', received {devices!r}.") from None
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices: expected a positive integer or 'all', received {devices!r}.")
    return int(devices)


def device_mesh(devices=None) -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` with axis ``"points"`` over the first ``devices`` visible devices
    of JAX's default backend (``None`` or ``"all"``: every visible device).

    Raises ValueError naming ``devices`` when more are asked for than are visible."""
    devices = parse_devices(devices)
    visible = jax.devices()
    want = len(visible) if devices in (None, "all") else devices
    if want > len(visible):
        platform = visible[0].platform
        hint = (f"on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={want} before jax is imported "
                f"(a correctness check: the forced devices share the same cores)" if platform == "cpu" else
                f"check CUDA_VISIBLE_DEVICES / the machine's {platform} devices")
        raise ValueError(f"devices: asked for {want}, {len(visible)} visible ({platform}); {hint}, or pass "
                         f"devices <= {len(visible)} (or 'all').")
    return Mesh(np.array(visible[:want]), (AXIS,))


def padded_length(n: int, mesh: Mesh, multiple: int = 1) -> int:
    """The smallest length ≥ n that splits into ``mesh.size`` equal blocks whose length is a multiple of
    ``multiple`` (so that a stride-``multiple`` subset of every block is a stride subset of the whole)."""
    if n < 1:
        raise ValueError(f"n: expected a positive number of points, received {n}.")
    per = -(-int(n) // mesh.size)
    per = -(-per // int(multiple)) * int(multiple)
    return per * mesh.size


def points_sharding(mesh: Mesh) -> NamedSharding:
    """Axis 0 split over the mesh's ``"points"`` axis, the other axes replicated."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def shard_points(x, mesh: Mesh, *, length: int | None = None, pad: str = "first") -> jax.Array:
    """``x`` (n, ...) padded to ``length`` rows and placed with :func:`points_sharding` (each device
    receives only its own block).

    pad: "first" repeats row 0 (a valid point: no 0/0 in padded rows; give those rows weight zero),
    "zeros" pads with zeros (weights, right-hand sides)."""
    if pad not in ("first", "zeros"):
        raise ValueError(f"pad: expected 'first' or 'zeros', received {pad!r}.")
    n = x.shape[0]
    length = padded_length(n, mesh) if length is None else int(length)
    if length < n or length % mesh.size:
        raise ValueError(f"length: expected a multiple of {mesh.size} devices ≥ n = {n}, received {length}; "
                         f"use padded_length(n, mesh).")
    if isinstance(x, jax.Array) and length == n:
        return jax.device_put(x, points_sharding(mesh))
    x = np.asarray(x)
    if length > n:
        fill = (np.repeat(x[:1], length - n, axis=0) if pad == "first"
                else np.zeros((length - n,) + x.shape[1:], dtype=x.dtype))
        x = np.concatenate([x, fill], axis=0)
    return jax.device_put(x, points_sharding(mesh))


def local_blocks(x, mesh: Mesh) -> jax.Array:
    """(D·L, ...) sharded -> (D, L, ...) with axis 0 sharded: every device's block as one row, so that
    ``y[:, lo:hi]`` takes a chunk of each device's own points (no data movement)."""
    D = mesh.size
    y = x.reshape((D, x.shape[0] // D) + x.shape[1:])
    return jax.device_put(y, points_sharding(mesh))


def describe_mesh(mesh: Mesh | None) -> dict:
    """{"count", "platform", "kinds"} of the mesh's devices (one default device for None), for metrics."""
    devs = list(mesh.devices.flat) if mesh is not None else [jax.devices()[0]]
    return {"count": len(devs), "platform": devs[0].platform,
            "kinds": sorted({str(getattr(d, "device_kind", d.platform)) for d in devs}),
            "sharded": mesh is not None, "visible": len(jax.devices())}


def per_device(fn, mesh: Mesh, in_specs, out_specs):
    """``fn`` run on every device's own block (``shard_map``): arguments with spec :data:`POINTS` arrive as
    the local (L, ...) block, :data:`REPLICATED` ones whole; a sum over the points inside ``fn`` is a local
    sum followed by ``jax.lax.psum(·, AXIS)`` (the collective). ``jax.shard_map`` on current JAX,
    ``jax.experimental.shard_map`` on the pinned 0.5.3. The replication check is off (a ``lax.scan`` whose
    carry starts replicated and accumulates local rows trips it): ``fn`` must psum what it returns
    replicated."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # JAX < 0.7 (the [nt] extra's 0.5.3) has only this one

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)
