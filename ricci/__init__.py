"""ntkflow.ricci: neural-network metric flows on Riemannian manifolds (tori Tⁿ, spheres Sⁿ) — the local
limit (Perelman's Ricci flow), the finite-σ generalised Ricci flow of a frozen Gaussian kernel, and flows
driven by the empirical metric-NTK of finite networks."""

# domains, geometry, Perelman's functionals and local drivers (GEOMETRY engineer)
from . import geometry  # noqa: E402
from .domains import FunctionMetric, Sphere, Torus, flat_metric, metric_from_function, pushforward, round_metric  # noqa: E402
from .perelman import (  # noqa: E402
    FDriver,
    LambdaDriver,
    LocalKernel,
    SpectralBasis,
    hamilton_driver,
    perelman_lambda,
)
from .local import FlowResult, LocalFlowConfig, local_flow  # noqa: E402

# reference solvers of Hamilton's flow (REFERENCE+CLI engineer); the job lives in ntkflow.ricci.job
from .reference import (  # noqa: E402
    AxisymmetricSphere,
    ConformalSphere,
    ConformalTorus,
    WarpedProduct,
    integrate,
    moebius_factor,
    round_radius2,
)

# the finite-σ flow in a frozen kernel's function space (KERNEL-FLOW engineer)
from .kernel_flow import (  # noqa: E402
    CosNetKernel,
    GaussianKernel,
    KernelFlowProblem,
    KernelMetricField,
    kernel_flow,
    kernel_flow_problem,
    linearised_rate,
    sphere_kernel_moments,
)
