import time, numpy as np, sys
from ntkflow.manifolds import random_quintic, sample
from ntkflow.cy import matrixfree as mf
from ntkflow.solvers import cg
from ntkflow.solvers.preconditioners import randomized_nystrom
k=int(sys.argv[1]); n=int(sys.argv[2]); r=int(sys.argv[3])
m=random_quintic(0); ps=sample(m,n,seed=0,progress=False)
prob=mf.PrimalProblem(ps.points,ps.jacobian,ps.weights,np.log(ps.omega_sq),k,link="log")
v=prob.initial(); lin=prob.linearise(v); p=prob.n_params; w=prob.weights
print("p",p,flush=True)
J=lin.J
def G(V): return J.T.mm(w[:,None]*J.mm(V))/n
b=-J.T.mv(w*lin.r)/n
d=np.maximum(lin.diag,1e-300)
t=time.perf_counter(); G(np.ones((p,1))); print("1 col", time.perf_counter()-t, flush=True)
t=time.perf_counter(); sk=randomized_nystrom(G, r, p=p, diag=d, seed=0); print(f"sketch r={r}", time.perf_counter()-t, sk.seconds, flush=True)
print("eigs", np.round(sk.eigs[:8],3), np.round(sk.eigs[r//4::r//4],3), flush=True)
lam=1e-3
from ntkflow.engine.operators import LinearOperator
class Op(LinearOperator):
    shape=(p,p); dtype=np.dtype(np.float64)
    def _mm(self,V): return G(V)+lam*d[:,None]*V
for rtol in (1e-2,1e-4):
    t=time.perf_counter(); r0=cg(Op(),b,rtol=rtol,precond=lambda V:V/(d*(1+lam))[:,None],maxiter=300); t0=time.perf_counter()-t
    t=time.perf_counter(); r1=cg(Op(),b,rtol=rtol,precond=sk.preconditioner(lam*d),maxiter=300); t1=time.perf_counter()-t
    print(f"rtol {rtol}: jacobi {r0.iterations} it {t0:.1f}s   nystrom {r1.iterations} it {t1:.1f}s", flush=True)
