import time, numpy as np, ntkflow
from ntkflow.cy.job import random_quintic, sigma_of
from ntkflow.cy import matrixfree as mf
from ntkflow.manifolds import sample, fs_det
m = random_quintic(0)
ps = sample(m, 40000, seed=1, progress=False)
tr, te = ps.split(30000)
prob = mf.PrimalProblem(tr.points, tr.jacobian, tr.weights, np.log(tr.omega_sq), 5)
v = np.zeros(prob.n_params); v[-1] = float(np.sum(prob.w * (np.log(fs_det(tr)) - prob.log_omega)) / np.sum(prob.w))
lam = 1e-3
for it, cap in enumerate([60, 60, 60, 60, 400, 400, 400]):
    t = time.perf_counter()
    res, l0 = mf.gn_step(prob, v, lam, rtol=1e-2 if cap == 60 else 1e-6, maxiter=cap)
    new = v + res.value; nl = prob.loss(new)
    if nl < l0: v, lam = new, max(lam * 0.3, 1e-9)
    else: lam *= 10
    r, _ = prob.residual(v)
    print(f"step {it+1} cap {cap}: CG {res.iterations} {res.status} loss {prob.loss(v):.5e} σ train {sigma_of(np.exp(r), prob.w):.4f} {time.perf_counter()-t:.0f} s", flush=True)
