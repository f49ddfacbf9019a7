"""Backends of :class:`ntkflow.engine.operators.KernelOperator`: each computes Y = K(x, y) V.

Layout: V is (m·p_in, k) with row index j·p_in + b; each backend views it as (m, p_in·k) per point
and returns (n·p_out, k). The kernel supplies the per-backend formula (dense / jax_block /
keops_apply); the backend does the tiling, dtype handling and distribution.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkflow._checks import positive_float

from .operators import DENSE_MAX_ENTRIES, dense_block_matrix, kernel_operator, register_backend

# --------------------------------------------------------------------------------------------
# dense (reference)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseBackend:
    """Forms the matrix with the kernel's NumPy reference; small problems and tests only."""

    name: str = "dense"

    def apply(self, op, V):
        rows, cols = op.shape
        if rows * cols > DENSE_MAX_ENTRIES:
            raise MemoryError(
                f"backend='dense' would form a {rows}×{cols} matrix ({rows * cols:.3g} entries), above "
                f"DENSE_MAX_ENTRIES={DENSE_MAX_ENTRIES:.3g}; use backend='keops' or 'jax'."
            )
        K = dense_block_matrix(op.kernel, op.x.raw, op.y.raw)
        return K @ V


# --------------------------------------------------------------------------------------------
# KeOps
# --------------------------------------------------------------------------------------------


class KeOpsCompileError(RuntimeError):
    """A KeOps formula failed to compile or run."""


def _to_point_major(V, m, p_in, complex_output):
    """(m·p_in, k) -> (m, p_in·k) [real]  or  (m, 2·p_in·k) = [Re, Im] for complex kernels."""
    k = V.shape[1]
    Vp = V.reshape(m, p_in * k)
    if complex_output:
        Vc = Vp.astype(np.complex128 if Vp.dtype in (np.float64, np.complex128) else np.complex64)
        Vp = np.concatenate([Vc.real, Vc.imag], axis=1)
    return Vp


def _from_point_major(R, n, p_out, k, complex_output):
    if complex_output:
        h = p_out * k
        R = R[:, :h] + 1j * R[:, h:]
    return R.reshape(n * p_out, k)


@dataclass(frozen=True)
class KeOpsBackend:
    """pykeops LazyTensor reduction Σ_j K(x_i, y_j) v_j: fused, never an n×m array.

    Runs on the GPU where KeOps finds CUDA, else on the CPU (each new formula compiles once, ~5 s,
    cached under ~/.cache/keops*).
    """

    name: str = "keops"

    def apply(self, op, V):
        try:
            from pykeops.numpy import LazyTensor
        except Exception as exc:  # pragma: no cover - depends on the machine
            raise KeOpsCompileError(
                f"backend='keops': pykeops could not be imported ({exc!r}); install pykeops and a C++ "
                f"compiler (g++), or use backend='jax'."
            ) from exc
        kernel = op.kernel
        p_out, p_in = kernel.block_shape
        n, m = op.x.real.shape[0], op.y.real.shape[0]
        k = V.shape[1]
        cplx = kernel.output_kind == "complex"
        dtype = op.x.real.dtype
        Vp = np.ascontiguousarray(_to_point_major(V, m, p_in, cplx), dtype=dtype)
        Xi = LazyTensor(op.x.real[:, None, :])
        Yj = LazyTensor(op.y.real[None, :, :])
        Vj = LazyTensor(Vp[None, :, :])
        try:
            R = kernel.keops_apply(Xi, Yj, Vj, k).sum(axis=1)
        except NotImplementedError:  # the kernel has no KeOps form: its own message says what to use
            raise
        except Exception as exc:
            raise KeOpsCompileError(
                f"backend='keops': the KeOps formula of {kernel!r} failed to compile or run "
                f"({type(exc).__name__}: {str(exc)[:400]}). Check that g++ and the Python headers are "
                f"installed, clear ~/.cache/keops* if a previous build was interrupted, or use backend='jax'."
            ) from exc
        return _from_point_major(np.asarray(R), n, p_out, k, cplx)


# --------------------------------------------------------------------------------------------
# JAX, tiled
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _jax_tiled_fn(kernel, tile: int):
    import jax
    import jax.numpy as jnp

    p_out, p_in = kernel.block_shape
    jax_apply = getattr(kernel, "jax_apply", None)  # kernels that apply blocks without forming them

    def apply(xr, yr, V):  # xr (n, d), yr (m, d), V (m, p_in, k)
        n = xr.shape[0]
        n_tiles = -(-n // tile)
        pad = n_tiles * tile - n
        xp = jnp.concatenate([xr, jnp.repeat(xr[:1], pad, axis=0)], axis=0) if pad else xr
        xt = xp.reshape(n_tiles, tile, xr.shape[1])

        def one(xb):
            if jax_apply is not None:
                return jax_apply(xb, yr, V)  # (tile, p_out, k)
            K = kernel.jax_block(xb, yr)
            if kernel.is_scalar:
                return (K @ V[:, 0, :])[:, None, :]  # (tile, 1, k)
            return jnp.einsum("imab,mbr->iar", K, V)  # (tile, p_out, k)

        out = jax.lax.map(one, xt)  # (n_tiles, tile, p_out, k)
        return out.reshape(n_tiles * tile, p_out, -1)[:n]

    return jax.jit(apply)


@dataclass(frozen=True)
class JaxBackend:
    """Row-tiled jit matvec: memory O(tile · m · p_out · p_in); runs on CPU and GPU.

    ``tile=None`` picks the largest tile whose kernel block stays under ``block_entries``.
    """

    tile: int | None = None
    block_entries: int = 8_000_000
    name: str = "jax"

    def apply(self, op, V):
        import jax.numpy as jnp

        kernel = op.kernel
        p_out, p_in = kernel.block_shape
        n, m = op.x.real.shape[0], op.y.real.shape[0]
        k = V.shape[1]
        tile = self.tile or max(8, min(1024, self.block_entries // max(1, m * p_out * p_in)))
        tile = int(min(tile, max(n, 1)))
        fn = _jax_tiled_fn(kernel, tile)
        Vj = jnp.asarray(V.reshape(m, p_in, k))
        out = fn(jnp.asarray(op.x.real), jnp.asarray(op.y.real), Vj)
        return np.asarray(out).reshape(n * p_out, k)


# --------------------------------------------------------------------------------------------
# dask.distributed
# --------------------------------------------------------------------------------------------


def _dask_block(kernel, inner: str, xb, y, V, dtype_name: str):
    """Runs on a worker: K(x_block, y) V with an inner single-process backend."""
    op = kernel_operator(kernel, xb, y, backend=inner, dtype=np.dtype(dtype_name))
    return op.backend.apply(op, V)


class SchedulerError(ConnectionError):
    """A dask scheduler cannot be reached in time, or has no workers (the message names the address)."""


def connect_scheduler(address: str, timeout: float = 5.0):
    """A ``distributed.Client`` joined to the scheduler at ``address`` within ``timeout`` seconds, after
    waiting at most ``timeout`` more for one worker; raises :class:`SchedulerError` naming the address
    otherwise. Every wait is bounded: there is no network wait without a timeout."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"scheduler: expected an address like 'tcp://host:8786', received {address!r}.")
    from distributed import Client  # deferred: dask is an optional, heavy dependency

    t = float(positive_float("timeout", timeout))
    # Client(timeout=) bounds the TCP connect but not dask's handshake: a service that accepts and stays
    # silent would block for ever. So the client is made in a daemon thread that is waited for at most
    # 2·t (it is abandoned, not joined, if it never returns).
    box: dict = {}

    def make():
        try:
            box["client"] = Client(address, timeout=f"{t}s", set_as_default=False)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    th = threading.Thread(target=make, name="ntkflow-dask-connect", daemon=True)
    th.start()
    th.join(2 * t + 1.0)
    exc = box.get("error")
    if th.is_alive():
        exc = TimeoutError(f"no dask handshake from {address} within {2 * t + 1.0:g} s")
    if exc is not None and not isinstance(exc, Exception):
        raise exc
    if exc is not None:
        # a service that is not dask answers with bytes dask's protocol misreads (e.g. as a huge frame
        # length: MemoryError), or not at all (timeout)
        raise SchedulerError(
            f"scheduler: cannot reach a dask scheduler at {address!r} (timeout={t:g} s) "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); start one (`dask scheduler`), check the "
            f"address and port, or raise timeout=."
        ) from None
    client = box["client"]
    try:
        client.wait_for_workers(1, timeout=t)
    except (OSError, TimeoutError):
        client.close()
        raise SchedulerError(
            f"scheduler: the dask cluster at {address!r} has no workers (none joined within {t:g} s); "
            f"start workers (`dask worker {address}`) or raise timeout=."
        ) from None
    return client


@dataclass(frozen=True)
class DaskBackend:
    """Row blocks of an inner backend on a dask.distributed cluster; results concatenated.

    The points are scattered to the workers once per operator; each application broadcasts V.
    ``scheduler="tcp://host:port"`` joins an existing cluster, ``client=`` uses an existing
    ``distributed.Client``; otherwise an embedded ``LocalCluster`` (``n_workers`` processes, one
    thread each) is started on first use and closed by :meth:`close` (or at interpreter exit).

    A ``scheduler`` is joined when the backend is built (so :func:`kernel_operator` fails, not the first
    product): the connection waits at most ``timeout`` seconds, then at most ``timeout`` more for a
    worker; either failure raises :class:`SchedulerError` (a ``ConnectionError``) naming ``scheduler`` and
    the address. Every wait is bounded: there is no network wait without a timeout.
    """

    inner: str = "keops"
    n_blocks: int | None = None
    scheduler: str | None = None
    client: Any = None
    n_workers: int = 2
    timeout: float = 5.0
    name: str = "dask"
    _state: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.inner not in ("keops", "jax", "dense"):
            raise ValueError(f"inner: expected 'keops', 'jax' or 'dense', received {self.inner!r}.")
        positive_float("timeout", self.timeout)
        if self.scheduler is not None and self.client is not None:
            raise ValueError(f"scheduler, client: give a scheduler address or a client, not both "
                             f"(received scheduler={self.scheduler!r}).")
        if self.scheduler is not None:
            if not isinstance(self.scheduler, str) or "://" not in self.scheduler:
                raise ValueError(f"scheduler: expected an address like 'tcp://host:8786', received {self.scheduler!r}.")
            self._connect()

    def _client(self):
        st = self._state
        if "client" in st:
            return st["client"]
        from distributed import Client, LocalCluster

        if self.client is not None:
            client = self.client
        elif self.scheduler is not None:
            return self._connect()
        else:
            cluster = LocalCluster(
                n_workers=self.n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster, set_as_default=False)
            st["owned"] = [client, cluster]
        st["client"] = client
        return client

    def _connect(self):
        """Join ``self.scheduler`` within ``timeout`` seconds and wait (as long) for one worker."""
        st = self._state
        if "client" in st:
            return st["client"]
        client = connect_scheduler(self.scheduler, self.timeout)
        st["owned"] = [client]
        st["client"] = client
        return client

    def apply(self, op, V):
        client = self._client()
        try:
            return self._apply(client, op, V)
        except SchedulerError:
            self._state.pop("scattered_key", None)  # scattered points may be lost with the workers
            raise
        except Exception as exc:
            self._state.pop("scattered_key", None)
            deadline = time.monotonic() + float(self.timeout)  # workers that are leaving may still be listed
            while self._n_workers(client) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._n_workers(client) == 0:
                raise SchedulerError(
                    f"scheduler: the dask cluster at {self.scheduler or 'the embedded cluster'!r} has no workers "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); start workers and rerun.") from None
            raise

    @staticmethod
    def _n_workers(client) -> int:
        try:
            return len(client.scheduler_info(n_workers=-1)["workers"])
        except TypeError:  # pragma: no cover - older distributed without n_workers=
            return len(client.scheduler_info()["workers"])
        except Exception:  # the scheduler itself is gone
            return 0

    def _apply(self, client, op, V):
        n = op.x.raw.shape[0]
        nb = self.n_blocks or max(1, len(client.scheduler_info()["workers"]))
        nb = min(nb, n)
        key = (id(op.x), id(op.y))
        if self._state.get("scattered_key") != key:
            bounds = np.linspace(0, n, nb + 1).astype(int)
            blocks = [op.x.raw[s:e] for s, e in zip(bounds[:-1], bounds[1:])]
            xf = client.scatter(blocks, hash=False)
            yf = client.scatter(op.y.raw, broadcast=True, hash=False)
            self._state.update(scattered_key=key, xf=xf, yf=yf, keep=(op.x, op.y))
        Vf = client.scatter(V, broadcast=True, hash=False)
        dname = np.dtype(op.x.real.dtype).name
        futs = [
            client.submit(_dask_block, op.kernel, self.inner, xb, self._state["yf"], Vf, dname, pure=False)
            for xb in self._state["xf"]
        ]
        parts = self._gather(client, futs)
        return np.concatenate(parts, axis=0)

    def _gather(self, client, futs):
        """The blocks' results (:func:`gather_bounded`)."""
        return gather_bounded(client, futs, self.timeout, self.scheduler or "the embedded cluster",
                              what="a block of the product")

    def close(self):
        """Release the scattered points and close the client/cluster this backend started."""
        for key in ("xf", "yf", "keep", "scattered_key"):
            self._state.pop(key, None)
        for obj in self._state.pop("owned", []):
            try:
                obj.close()
            except Exception:  # pragma: no cover
                pass
        self._state.clear()


def gather_bounded(client, futs, timeout: float, where: str, *, what: str = "a block"):
    """``client.gather(futs)``, waiting in slices of ``timeout`` seconds; gives up (:class:`SchedulerError`
    naming ``where``) when the cluster has had no worker for a whole slice or the client lost its scheduler,
    or when dask gave up on a task (a worker died while computing it ``distributed.scheduler.allowed-failures``
    times: KilledWorker). A long computation on a live cluster is never cut short; a task whose result was
    lost with a worker is recomputed by dask from its lineage meanwhile."""
    t = float(timeout)
    while True:
        deadline, nap = time.monotonic() + t, 1e-4
        while time.monotonic() < deadline and not all(f.done() for f in futs):
            time.sleep(nap)
            nap = min(1.5 * nap, 0.01)
        if all(f.done() for f in futs):
            break
        if client.status not in ("running", "connecting"):
            raise SchedulerError(f"scheduler: the client lost the dask scheduler at {where!r} during a computation "
                                 f"(client status {client.status!r}); restart the scheduler and rerun.")
        if DaskBackend._n_workers(client) == 0:
            raise SchedulerError(f"scheduler: the dask cluster at {where!r} has no workers left (they died or "
                                 f"were stopped during a computation); start workers and rerun.")
    try:
        return client.gather(futs)
    except Exception as exc:
        if type(exc).__name__ in ("KilledWorker", "CancelledError", "FutureCancelledError"):
            raise SchedulerError(f"scheduler: dask gave up on {what} at {where!r} "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); a worker died "
                                 f"while computing it (out of memory?). Use more/larger workers or smaller "
                                 f"blocks.") from None
        raise


for _name, _cls in (("dense", DenseBackend), ("keops", KeOpsBackend), ("jax", JaxBackend), ("dask", DaskBackend)):
    register_backend(_name, _cls)
