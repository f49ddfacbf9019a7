"""A non-round metric on S³ for `ntkflow ricci --metric-file docs/examples/ricci_berger_s3.py --domain S3`.

G(x) is a (4, 4) matrix at the embedded point x ∈ S³ ⊂ R⁴; only its restriction to T_xS³ = x^⊥ matters.
The Hopf fibre direction v = J x (J the complex structure of C² = R⁴) is tangent to S³ (v ⊥ x), so
G = e^{2u(x)} (I + a v vᵀ) is a Berger sphere (fibres stretched by √(1 + a)) times a conformal factor
e^{2u} with u = 0.2 x₄ (larger towards the north pole x₄ = 1). a = 0, u = 0 would be the round unit S³.
"""
import jax.numpy as jnp

J = jnp.array([[0.0, -1.0, 0.0, 0.0],
               [1.0, 0.0, 0.0, 0.0],
               [0.0, 0.0, 0.0, -1.0],
               [0.0, 0.0, 1.0, 0.0]])
A = 0.5  # squashing of the Hopf fibres
U = 0.2  # conformal tilt towards x₄ = 1


def metric(x):
    v = J @ x  # (4,) tangent to S³ at x
    return jnp.exp(2.0 * U * x[3]) * (jnp.eye(4) + A * jnp.outer(v, v))
