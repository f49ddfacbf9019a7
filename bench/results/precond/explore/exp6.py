import numpy as np, sys
from ntkflow.manifolds import random_quintic, sample
from ntkflow.cy import matrixfree as mf
n=int(sys.argv[2])
m=random_quintic(0); ps=sample(m,n,seed=0,progress=False)
for k in [int(x) for x in sys.argv[1].split(",")]:
    prob=mf.PrimalProblem(ps.points,ps.jacobian,ps.weights,np.log(ps.omega_sq),k,link="log")
    v=prob.initial(); r,ginv,H=prob._evaluate(v); pt=prob._point(H,ginv); w=prob.weights
    L=0; Ls=0
    for lo in range(0,n,500):
        sl=slice(lo,lo+500)
        Y,Z0=prob._yz(pt,sl); K=np.einsum("nba,nbc->ac",Y*(w[sl]*pt.a[sl])[:,None,None],Z0)/np.pi
        S=prob.S[sl]; L=L+K; Ls=Ls+np.einsum("n,na,nb->ab",w[sl]*pt.a[sl]*pt.q[sl],S,np.conj(S))
    L=L/n; Ls=Ls/n
    for nm,M in (("deriv",L),("s",Ls),("sum",L+Ls)):
        l=np.linalg.eigvalsh(0.5*(M+M.conj().T)); dd=np.real(np.diag(M))
        print(f"k={k} N_k={prob.nk} {nm}: eig min {l[0]:.3g} q10 {l[len(l)//10]:.3g} med {l[len(l)//2]:.3g} q90 {l[9*len(l)//10]:.3g} max {l[-1]:.3g}; diag min {dd.min():.3g} max {dd.max():.3g}", flush=True)
