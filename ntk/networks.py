"""Finite networks in the NTK parameterisation: MLP (erf, relu, gelu), cos-net and gauss-net.

Every network is a frozen dataclass with ``init(key) -> params`` (a flat dict of arrays, every entry
drawn from N(0, 1) or, for the cos-net phases, U[−π, π]) and ``apply(params, x) -> (n_out,)`` for one
point x of shape (d_in,); vmap over points yourself (or use :func:`apply_batch`). The scales σ live in
the forward pass, not in the draws (NTK parameterisation), so gradient descent on ``params`` with an
O(1) learning rate has a width-independent infinite-width limit.

MLP (depth L = len(widths), n_0 = d_in)::

    h¹ = σ_w/√n_0 · W⁰ x + σ_b b⁰,   h^{l+1} = σ_w/√n_l · W^l φ(h^l) + σ_b b^l,   f = h^{L+1}

Cos-net (flows.md; the cosine takes the full inner product b_i·x)::

    f(x) = σ_a/√N Σ_i a_i cos(σ_b/√d b_i·x + c_i),   a, b ~ N(0, 1),  c ~ U[−π, π]

Gauss-net (flows.md)::

    f(x) = σ_b1 b₁ + σ_W1/√N Σ_i W₁_i exp(σ_W0/√d W₀_i·x + σ_b0 b₀_i) / exp(σ_b0² + σ_W0²|x|²/d)

``trainable`` names the entries of ``params`` that gradient descent (and hence the NTK) sees; the
others stay at their initial values (e.g. freeze the cos-net frequencies b for a pure Gaussian kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ntkflow._checks import nonneg_float, positive_float, positive_int

ACTIVATIONS = ("erf", "relu", "gelu")


def activation_fn(name: str):
    """φ for an activation name in :data:`ACTIVATIONS` (gelu is the exact x Φ(x))."""
    if name == "erf":
        return jax.scipy.special.erf
    if name == "relu":
        return jax.nn.relu
    if name == "gelu":
        return lambda h: jax.nn.gelu(h, approximate=False)
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, received {name!r}.")


def _check_trainable(name: str, trainable, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if trainable is None:
        return allowed
    t = tuple(trainable)
    bad = [k for k in t if k not in allowed]
    if bad or not t:
        raise ValueError(
            f"{name}: expected a non-empty subset of {allowed}, received {trainable!r}; "
            f"pass e.g. trainable={allowed!r} (or None for all)."
        )
    return t


def _mask(params: dict, width: int):
    """(mask, N_eff): an optional frozen 0/1 ``params["mask"]`` (width,) embeds a width-N_eff network in
    the arrays of a wider one (hidden units with mask 0 contribute nothing and get zero gradients;
    fan-in scales use N_eff = Σ mask). Lets one compiled function serve many widths (the study)."""
    m = params.get("mask")
    if m is None:
        return None, float(width)
    return m, jnp.sum(m)


def with_width_mask(params: dict, n_eff: int, width: int) -> dict:
    """params of a width-``width`` network, restricted to its first ``n_eff`` hidden units (see _mask)."""
    if isinstance(n_eff, (int, np.integer)) and not 1 <= int(n_eff) <= int(width):
        raise ValueError(f"n_eff: need 1 <= n_eff <= width={width}, received {n_eff}.")
    return {**params, "mask": (jnp.arange(width) < n_eff).astype(jnp.float64)}


@dataclass(frozen=True)
class MLP:
    """Fully connected network in the NTK parameterisation (module docstring).

    Args:
        d_in: input dimension n_0.
        widths: hidden widths (n_1, …, n_L); L ≥ 1.
        activation: "erf", "relu" or "gelu".
        sigma_w, sigma_b: weight and bias scales (σ_b = 0 drops the biases from the NTK).
        n_out: number of outputs (independent readout rows).
    """

    d_in: int
    widths: tuple[int, ...] = (512,)
    activation: str = "erf"
    sigma_w: float = 1.0
    sigma_b: float = 0.1
    n_out: int = 1

    def __post_init__(self):
        positive_int("d_in", self.d_in)
        positive_int("n_out", self.n_out)
        w = tuple(self.widths) if not isinstance(self.widths, (int, np.integer)) else (int(self.widths),)
        if not w:
            raise ValueError("widths: need at least one hidden layer, received (); pass e.g. widths=(512,).")
        object.__setattr__(self, "widths", tuple(positive_int("widths[i]", int(v)) for v in w))
        activation_fn(self.activation)
        object.__setattr__(self, "sigma_w", positive_float("sigma_w", self.sigma_w))
        object.__setattr__(self, "sigma_b", nonneg_float("sigma_b", self.sigma_b))

    @property
    def trainable(self) -> tuple[str, ...]:
        L = len(self.widths) + 1
        return tuple(f"W{l}" for l in range(L)) + tuple(f"b{l}" for l in range(L))

    @property
    def width(self) -> int:
        return self.widths[-1]

    def init(self, key) -> dict:
        dims = (self.d_in, *self.widths, self.n_out)
        keys = jax.random.split(key, 2 * (len(dims) - 1))
        p = {}
        for l in range(len(dims) - 1):
            p[f"W{l}"] = jax.random.normal(keys[2 * l], (dims[l + 1], dims[l]))  # (n_{l+1}, n_l)
            p[f"b{l}"] = jax.random.normal(keys[2 * l + 1], (dims[l + 1],))
        return p

    def apply(self, params: dict, x) -> jax.Array:
        phi = activation_fn(self.activation)
        dims = (self.d_in, *self.widths, self.n_out)
        mask, n_eff = _mask(params, self.widths[-1])
        h = x  # (d_in,)
        for l in range(len(dims) - 1):
            fan_in = dims[l]
            if l > 0:
                h = phi(h)
                if mask is not None:
                    h, fan_in = h * mask, n_eff
            h = self.sigma_w / jnp.sqrt(fan_in) * (params[f"W{l}"] @ h) + self.sigma_b * params[f"b{l}"]
        return h  # (n_out,)


@dataclass(frozen=True)
class CosNet:
    """Cos-net f(x) = σ_a/√N Σ_i a_i cos(σ_b/√d b_i·x + c_i) (flows.md, NTK parameterisation).

    Infinite width, E(x,x') = exp(−σ_b²|x−x'|²/(2d)): NNGP (σ_a²/2)E; NTK (σ_a²/2)E from a,
    + (σ_a²/2)E from c, + (σ_a²σ_b²/2d)(x·x')E from b.
    """

    d_in: int
    width: int = 512
    sigma_a: float = 1.0
    sigma_b: float = 1.0
    n_out: int = 1
    trainable: tuple[str, ...] | None = ("a", "b", "c")

    def __post_init__(self):
        positive_int("d_in", self.d_in)
        positive_int("width", self.width)
        positive_int("n_out", self.n_out)
        object.__setattr__(self, "sigma_a", positive_float("sigma_a", self.sigma_a))
        object.__setattr__(self, "sigma_b", positive_float("sigma_b", self.sigma_b))
        object.__setattr__(self, "trainable", _check_trainable("trainable", self.trainable, ("a", "b", "c")))

    def init(self, key) -> dict:
        ka, kb, kc = jax.random.split(key, 3)
        return {
            "a": jax.random.normal(ka, (self.width, self.n_out)),  # (N, n_out)
            "b": jax.random.normal(kb, (self.width, self.d_in)),  # (N, d)
            "c": jax.random.uniform(kc, (self.width,), minval=-jnp.pi, maxval=jnp.pi),  # (N,)
        }

    def apply(self, params: dict, x) -> jax.Array:
        pre = self.sigma_b / np.sqrt(self.d_in) * (params["b"] @ x) + params["c"]  # (N,)
        mask, n_eff = _mask(params, self.width)
        feat = jnp.cos(pre) if mask is None else jnp.cos(pre) * mask
        return self.sigma_a / jnp.sqrt(n_eff) * (feat @ params["a"])  # (n_out,)


@dataclass(frozen=True)
class GaussNet:
    """Gauss-net f(x) = σ_b1 b1 + σ_w1/√N Σ w1 exp(σ_W0/√d W₀·x + σ_b0 b₀)/exp(σ_b0² + σ_W0²|x|²/d).

    Infinite width, E = exp(−σ_W0²|x−x'|²/(2d)): NNGP σ_b1² + σ_W1² E; NTK adds
    σ_W1² E (σ_b0² + σ_W0² x·x'/d) when w0, b0 train.
    """

    d_in: int
    width: int = 512
    sigma_w0: float = 1.0
    sigma_b0: float = 0.5
    sigma_w1: float = 1.0
    sigma_b1: float = 0.0
    n_out: int = 1
    trainable: tuple[str, ...] | None = ("w0", "b0", "w1", "b1")

    def __post_init__(self):
        positive_int("d_in", self.d_in)
        positive_int("width", self.width)
        positive_int("n_out", self.n_out)
        for n in ("sigma_w0", "sigma_w1"):
            object.__setattr__(self, n, positive_float(n, getattr(self, n)))
        for n in ("sigma_b0", "sigma_b1"):
            object.__setattr__(self, n, nonneg_float(n, getattr(self, n)))
        object.__setattr__(
            self, "trainable", _check_trainable("trainable", self.trainable, ("w0", "b0", "w1", "b1"))
        )

    def init(self, key) -> dict:
        k = jax.random.split(key, 4)
        return {
            "w0": jax.random.normal(k[0], (self.width, self.d_in)),  # (N, d)
            "b0": jax.random.normal(k[1], (self.width,)),  # (N,)
            "w1": jax.random.normal(k[2], (self.width, self.n_out)),  # (N, n_out)
            "b1": jax.random.normal(k[3], (self.n_out,)),  # (n_out,)
        }

    def apply(self, params: dict, x) -> jax.Array:
        d = self.d_in
        logits = self.sigma_w0 / np.sqrt(d) * (params["w0"] @ x) + self.sigma_b0 * params["b0"]
        lognorm = self.sigma_b0**2 + self.sigma_w0**2 * jnp.sum(x * x) / d
        feat = jnp.exp(logits - lognorm)  # (N,)
        mask, n_eff = _mask(params, self.width)
        if mask is not None:
            feat = feat * mask
        return self.sigma_b1 * params["b1"] + self.sigma_w1 / jnp.sqrt(n_eff) * (feat @ params["w1"])


Network = MLP | CosNet | GaussNet


def with_width(net, width: int):
    """The same architecture at another width (all hidden layers of an MLP get ``width``)."""
    import dataclasses

    if isinstance(net, MLP):
        return dataclasses.replace(net, widths=(int(width),) * len(net.widths))
    return dataclasses.replace(net, width=int(width))


def with_outputs(net, n_out: int):
    import dataclasses

    return dataclasses.replace(net, n_out=int(n_out))


def apply_batch(net, params: dict, x) -> jax.Array:
    """f on a batch: x (n, d_in) -> (n, n_out)."""
    return jax.vmap(lambda xi: net.apply(params, xi))(jnp.asarray(x))


def split_params(trainable: tuple[str, ...], params: dict) -> tuple[dict, dict]:
    """(trainable entries, frozen entries) of a flat params dict."""
    tp = {k: v for k, v in params.items() if k in trainable}
    fp = {k: v for k, v in params.items() if k not in trainable}
    return tp, fp
