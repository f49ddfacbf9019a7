import time, numpy as np, sys
from ntkflow.manifolds import random_quintic, sample
from ntkflow.cy import matrixfree as mf
from ntkflow.solvers import cg
k=int(sys.argv[1]); n=int(sys.argv[2])
m=random_quintic(0); ps=sample(m,n,seed=0,progress=False)
prob=mf.PrimalProblem(ps.points,ps.jacobian,ps.weights,np.log(ps.omega_sq),k,link="log")
p=prob.n_params; w=prob.weights; nk=prob.nk; print("p",p,"n",n,flush=True)
v=prob.initial()
r,ginv,H=prob._evaluate(v); pt=prob._point(H,ginv)
lin=prob.linearise(v)
Jd=lin.J.mm(np.eye(p)); G=Jd.T@(w[:,None]*Jd)/n; b=-Jd.T@(w*lin.r)/n
d=np.maximum(lin.diag,1e-300)
Y,Z0=prob._yz(pt,slice(None))  # (n,d,N), Z0 = g^-T conj(Y)
K=np.einsum("nba,nbc->nac",Y,Z0)  # sum_b Y_{b a} Z0_{b c}: (Y^T g^-T Ybar)_{ac}
S=prob.S
Lx=(w*pt.a)[:,None,None]*(K/np.pi + pt.q[:,None,None]*S[:,:,None]*np.conj(S)[:,None,:])
L0=Lx.mean(0); L0=0.5*(L0+L0.conj().T)
iu=prob.iu; mm=len(iu[0])
def vec(X): return np.concatenate([np.real(np.diag(X)), np.real(X[iu]), np.imag(X[iu])])
def unvec(t):
    X=np.zeros((nk,nk),complex); X[np.arange(nk),np.arange(nk)]=t[:nk]; up=t[nk:nk+mm]+1j*t[nk+mm:]
    X[iu]=up; X[iu[1],iu[0]]=np.conj(up); return X
half=np.r_[np.ones(nk),0.5*np.ones(2*mm)]
for name,L in (("L",L0),("conjL",np.conj(L0))):
    l,V=np.linalg.eigh(L)
    print(name,"eig L range",l[0],l[-1])
    # K_theta dense
    Kt=np.zeros((p-1,p-1))
    for j in range(p-1):
        e=np.zeros(p-1); e[j]=1; X=unvec(e); Kt[:,j]=vec(L@X@L)*(1/half)  # T_F^T(LXL) = vec * [1,2,2]
    Kt=0.5*(Kt+Kt.T)
    GH=G[:-1,:-1]
    alpha=np.trace(GH)/np.trace(Kt)
    print(name,"rel frob err of alpha*Kt vs G_H",np.linalg.norm(alpha*Kt-GH)/np.linalg.norm(GH), "alpha",alpha, flush=True)
    def Mk(Vv, lam):
        out=np.empty_like(Vv)
        for c in range(Vv.shape[1]):
            X=unvec(Vv[:-1,c]*half); Xt=V.conj().T@X@V
            Xt=Xt/(alpha*np.outer(l,l)+lam*np.mean(d[:-1]))
            out[:-1,c]=vec(V@Xt@V.conj().T); out[-1,c]=Vv[-1,c]/(d[-1]*(1+lam))
        return out
    for lam in (1e-3,1e-6):
        A=G+lam*np.diag(d)
        Mj=np.diag(1/(d*(1+lam)))
        Mkd=Mk(np.eye(p),lam); 
        print(name,"sym err",np.abs(Mkd-Mkd.T).max()/np.abs(Mkd).max())
        def cnd(M):
            ev=np.sort(np.real(np.linalg.eigvals(M@A))); return ev[-1]/ev[1], ev[0]
        itj=cg(A,b,rtol=1e-2,precond=Mj,maxiter=3000).iterations; itk=cg(A,b,rtol=1e-2,precond=Mkd,maxiter=3000).iterations
        itj4=cg(A,b,rtol=1e-6,precond=Mj,maxiter=3000).iterations; itk4=cg(A,b,rtol=1e-6,precond=Mkd,maxiter=3000).iterations
        print(f"{name} lam {lam}: cond(2nd) jacobi {cnd(Mj)} kron {cnd(Mkd)}; CG it 1e-2 {itj} vs {itk}; 1e-6 {itj4} vs {itk4}",flush=True)
