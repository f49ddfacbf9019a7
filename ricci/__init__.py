"""ntkflow.ricci: neural-network metric flows on Riemannian manifolds (tori Tⁿ, spheres Sⁿ) — the local
limit (Perelman's Ricci flow), the finite-σ generalised Ricci flow of a frozen Gaussian kernel, and flows
driven by the empirical metric-NTK of finite networks."""

# reference solvers of Hamilton's flow (REFERENCE+CLI engineer); the job lives in ntkflow.ricci.job
from .reference import (  # noqa: E402
    AxisymmetricSphere,
    ConformalTorus,
    WarpedProduct,
    integrate,
    moebius_factor,
    round_radius2,
)
