import time, numpy as np, sys
from ntkflow.manifolds import random_quintic, sample
from ntkflow.cy import matrixfree as mf
from ntkflow.solvers import cg, CGSolve, LMConfig, levenberg_marquardt, DenseSolve
from ntkflow.solvers.preconditioners import randomized_nystrom
k=int(sys.argv[1]); n=int(sys.argv[2])
m=random_quintic(0); ps=sample(m,n,seed=0,progress=False)
prob=mf.PrimalProblem(ps.points,ps.jacobian,ps.weights,np.log(ps.omega_sq),k,link="log")
p=prob.n_params; w=prob.weights; print("p",p,"n",n, "p/n", p/n, flush=True)
cfg=LMConfig(max_iter=8, gtol=1e-4, scaling="marquardt", max_tries=1, stop_on_reject=False, min_lam=1e-9)
res=levenberg_marquardt(prob,cfg,solve=CGSolve(rtol=1e-2,maxiter=60))
thetas=[prob.initial()]
# replay trajectory
st=None
from ntkflow.solvers.least_squares import initial_state, lm_step
st=initial_state(prob,cfg)
for it in range(6):
    lin=prob.linearise(st.theta); lam=st.lam
    Jd=lin.J.mm(np.eye(p)); G=Jd.T@(w[:,None]*Jd)/n; b=-Jd.T@(w*lin.r)/n
    d=np.maximum(lin.diag,1e-300); s=1/np.sqrt(d)
    ev=np.linalg.eigvalsh(s[:,None]*G*s[None,:])[::-1]
    A=G+lam*np.diag(d)
    out=[]
    for rtol in (1e-2,1e-4):
        row=[cg(A,b,rtol=rtol,precond=lambda V:V/(d*(1+lam))[:,None],maxiter=3000).iterations]
        for r in (16,64,256):
            sk=randomized_nystrom(lambda V:G@V, r, p=p, diag=d, seed=0)
            row.append(cg(A,b,rtol=rtol,precond=sk.preconditioner(lam*d),maxiter=3000).iterations)
        out.append(row)
    print(f"step {it} lam {lam:.1e} loss {st.loss:.3e}  eig top {ev[0]:.2f} {ev[1]:.2f} {ev[3]:.2f} q10/50/90/99% {ev[int(.1*p)]:.3f} {ev[int(.5*p)]:.3f} {ev[int(.9*p)]:.3f} {ev[int(.99*p)]:.3g}  it rtol1e-2 jac/16/64/256 {out[0]}  rtol1e-4 {out[1]}", flush=True)
    st=lm_step(prob,st,cfg,CGSolve(rtol=1e-2,maxiter=60))
