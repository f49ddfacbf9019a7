"""Function spaces for the Kähler potential: real (k,k)-bihomogeneous functions on P^{N-1}.

Every basis function is

    f(z) = Σ_{(α,β)} H_{αβ} s_α(z) conj(s_β(z)) / |z|^{2k},      H Hermitian (N_k × N_k),

with s_α = z^{I_α} the degree-k monomials.  The span of all of them is the feature space of the
Bergman-type kernel u^k (u = |<z,w>|²/(|z|²|w|²)); restricting to functions invariant under a
symmetry group Γ of the hypersurface gives the RKHS of the Γ-averaged kernel.

A basis is stored sparsely: one list of *half pairs* (α ≤ β) with complex weights ω_p and the index of
the function each pair belongs to, such that

    H^{(a)} = Σ_{p ∈ a} ω_p E_{α_p β_p} + conj(ω_p) E_{β_p α_p}

(diagonal pairs carry half their H entry).  Pairs are sorted by function.

Symmetry detection (:func:`detect_symmetry`) finds, for Q = Σ_m c_m z^{I_m}:
- the diagonal phase group {a ∈ (Z_d)^N : a·I_m ≡ a·I_0 (mod d) for all monomials m};
- coordinate permutations σ with Q∘σ = λ Q;
- whether the coefficients are real up to one common phase (then z ↦ z̄ is a symmetry and the
  imaginary parts of orbit sums are not needed).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ntkflow._checks import positive_int
from ntkflow.manifolds import monomial_exponents as monomials  # (N_k, N) degree-k exponents, descending

__all__ = [
    "Symmetry",
    "PairBasis",
    "monomials",
    "detect_symmetry",
    "detect_symmetry_products",
    "no_symmetry",
    "invariant_basis",
    "full_basis",
]


@dataclass(frozen=True)
class Symmetry:
    """A symmetry group of a hypersurface acting on the coordinates.

    phases: (n_phase, N) int, the diagonal phase group as exponents of ω = e^{2πi/modulus}
    modulus: int, the order of the phase roots
    perms: (n_perm, N) int, the permutation group (each row a permutation of range(N))
    conjugation: whether z ↦ z̄ (complex conjugation) is a symmetry
    sizes: coordinates per factor of a product P^{n_1} × … × P^{n_m} (z factor by factor); () = one factor.
        A phase constant on every factor acts trivially on the (k,k) functions of equal multidegree.
    """

    phases: np.ndarray = field(repr=False)
    modulus: int
    perms: np.ndarray = field(repr=False)
    conjugation: bool
    sizes: tuple = ()

    @property
    def order(self) -> int:
        """|group| counted as (phase elements acting effectively) × permutations (upper bound)."""
        return int(len(self.phases) * len(self.perms))

    @property
    def trivial(self) -> bool:
        return len(self.perms) == 1 and self._phase_trivial() and not self.conjugation

    def _trivial_rows(self) -> np.ndarray:
        """(n_phase,) bool: the elements constant on every factor (c_a(1,…,1) on factor a), which act trivially."""
        ph = np.asarray(self.phases)
        sizes = self.sizes or (ph.shape[1],)
        off = np.cumsum((0,) + tuple(sizes))
        return np.all([np.all(ph[:, off[a]:off[a + 1]] == ph[:, off[a]:off[a] + 1], axis=1)
                       for a in range(len(sizes))], axis=0)

    def _phase_trivial(self) -> bool:
        return bool(np.all(self._trivial_rows()))

    def describe(self) -> str:
        n_eff = len(self.phases) // max(1, int(np.sum(self._trivial_rows())))
        parts = [f"phases: {n_eff} effective elements of (Z_{self.modulus})^N",
                 f"permutations: {len(self.perms)}",
                 f"conjugation: {'yes' if self.conjugation else 'no'}"]
        return "; ".join(parts)


def no_symmetry(n_coords: int) -> Symmetry:
    """The trivial group (only the phases that act trivially on (k,k) functions)."""
    return Symmetry(phases=np.zeros((1, n_coords), dtype=np.int64), modulus=1,
                    perms=np.arange(n_coords, dtype=np.int64)[None, :], conjugation=False)


def detect_symmetry(exponents, coefficients, *, rtol: float = 1e-10) -> Symmetry:
    """Symmetries of Q = Σ_m c_m z^{I_m}: diagonal phases mod deg Q, coordinate permutations with
    Q∘σ = λQ, and complex conjugation when all c_m are real up to one common phase."""
    exps = np.asarray(exponents, dtype=np.int64)
    coefs = np.asarray(coefficients, dtype=np.complex128)
    if exps.ndim != 2 or coefs.shape != (exps.shape[0],):
        raise ValueError(
            f"exponents/coefficients: expected shapes (n_mon, N) and (n_mon,), received "
            f"{exps.shape} and {coefs.shape}; pass one coefficient per monomial row.")
    keep = np.abs(coefs) > rtol * np.abs(coefs).max()
    exps, coefs = exps[keep], coefs[keep]
    n_mon, n = exps.shape
    d = int(exps[0].sum())
    # phase group
    if d ** n <= 2_000_000:
        cand = np.asarray(list(itertools.product(range(d), repeat=n)), dtype=np.int64)
        charges = (cand @ exps.T) % d  # (n_cand, n_mon)
        ok = np.all(charges == charges[:, :1], axis=1)
        phases = cand[ok]
    else:  # too many candidates to enumerate: keep only the trivial elements
        phases = np.asarray([[c] * n for c in range(d)], dtype=np.int64)
    # permutation group
    table = {tuple(e): c for e, c in zip(exps.tolist(), coefs)}
    perms = []
    if n <= 7:
        for perm in itertools.permutations(range(n)):
            lam = None
            good = True
            for e, c in table.items():
                pe = tuple(e[perm[i]] for i in range(n))
                c2 = table.get(pe)
                if c2 is None:
                    good = False
                    break
                r = c2 / c
                if lam is None:
                    lam = r
                elif abs(r - lam) > rtol * max(1.0, abs(lam)):
                    good = False
                    break
            if good:
                perms.append(perm)
    else:
        perms.append(tuple(range(n)))
    perms = np.asarray(perms, dtype=np.int64)
    # conjugation (coefficients real up to a common phase)
    ph = coefs / coefs[np.argmax(np.abs(coefs))]
    conj = bool(np.all(np.abs(ph.imag) <= rtol * np.abs(ph)))
    return Symmetry(phases=phases, modulus=d, perms=perms, conjugation=conj)


def _span_rank(rows: np.ndarray, rtol: float) -> int:
    sv = np.linalg.svd(rows, compute_uv=False)
    return int(np.sum(sv > rtol * max(sv[0], 1e-300)))


def _block_perms(sizes) -> np.ndarray:
    """Every permutation of the coordinates that maps factors to factors of the same size: permutations
    within each factor composed with permutations of equal-size factors (rows p: (σz)_i = z_{p_i})."""
    off = np.cumsum((0,) + tuple(sizes))
    blocks = [list(range(off[a], off[a + 1])) for a in range(len(sizes))]
    out = set()
    for order in itertools.permutations(range(len(sizes))):
        if any(sizes[a] != sizes[b] for a, b in zip(order, range(len(sizes)))):
            continue
        for inner in itertools.product(*(itertools.permutations(range(n)) for n in sizes)):
            # factor a of σz is factor order[a] of z, its coordinates permuted by inner[a]
            out.add(tuple(blocks[order[a]][j] for a in range(len(sizes)) for j in inner[a]))
    return np.asarray(sorted(out), dtype=np.int64)


def detect_symmetry_products(equations, sizes, *, rtol: float = 1e-10) -> Symmetry:
    """Symmetries of the complete intersection {Q_1 = … = Q_K = 0} in P^{n_1} × … × P^{n_m}.

    ``equations``: K pairs (exponents (n_mon, N), coefficients (n_mon,)), z factor by factor with ``sizes``
    (n_a + 1) coordinates each. Returns the group generated by
    - diagonal phases a ∈ (Z_d)^N, d the lcm of the equations' degrees per factor, with a·I_m constant (mod d)
      over the monomials of each equation (each Q_j ↦ λ_j Q_j);
    - coordinate permutations within factors and across equal-size factors with span{Q_j∘σ} = span{Q_j}
      (a permutation may exchange equations, e.g. the two cubics of the Dwork-type P⁵[3,3]);
    - z ↦ z̄ when span{conj Q_j} = span{Q_j}.
    Spans are compared by the rank of the stacked coefficient matrices (singular values > rtol·max).
    One factor and one equation give the group of :func:`detect_symmetry`.
    """
    sizes = tuple(int(n) for n in sizes)
    eqs = []
    for j, eq in enumerate(equations):
        e = np.asarray(eq[0], dtype=np.int64)
        c = np.asarray(eq[1], dtype=np.complex128)
        if e.ndim != 2 or e.shape[1] != sum(sizes) or c.shape != (e.shape[0],):
            raise ValueError(f"equations[{j}]: expected exponents (n_mon, {sum(sizes)}) and one coefficient per row for "
                             f"factor sizes {sizes}, received shapes {e.shape} and {c.shape}.")
        keep = np.abs(c) > rtol * np.abs(c).max()
        eqs.append((e[keep], c[keep]))
    n = sum(sizes)
    off = np.cumsum((0,) + sizes)
    degs = {int(e[0, off[a]:off[a + 1]].sum()) for e, _ in eqs for a in range(len(sizes))}
    d = math.lcm(*[x for x in degs if x > 0]) if any(degs) else 1
    if d ** n <= 2_000_000:
        cand = np.asarray(list(itertools.product(range(d), repeat=n)), dtype=np.int64)
        ok = np.ones(len(cand), dtype=bool)
        for e, _ in eqs:
            ch = (cand @ e.T) % d
            ok &= np.all(ch == ch[:, :1], axis=1)
        phases = cand[ok]
    else:  # too many candidates: only the elements constant on each factor (trivial on (k,k) functions)
        phases = np.asarray([np.repeat(c, sizes) for c in itertools.product(range(d), repeat=len(sizes))],
                            dtype=np.int64)
    # coefficient matrix C (K, M) over the union of the monomials
    mons = sorted({tuple(r) for e, _ in eqs for r in e.tolist()})
    index = {m: i for i, m in enumerate(mons)}
    C = np.zeros((len(eqs), len(mons)), dtype=np.complex128)
    for j, (e, c) in enumerate(eqs):
        for r, v in zip(e.tolist(), c):
            C[j, index[tuple(r)]] += v
    K = _span_rank(C, rtol)
    perms = []
    cand_perms = _block_perms(sizes) if math.prod(math.factorial(s) for s in sizes) <= 50_000 else \
        np.arange(n, dtype=np.int64)[None, :]
    for p in cand_perms:
        # (Q∘σ)(z) = Q(σz) = Σ c_m Π_i z_{p_i}^{I_m,i}: monomial m goes to the exponent row J with J_{p_i} = I_i
        Cp = np.zeros_like(C)
        good = True
        for m, i in index.items():
            q = [0] * n
            for a, b in enumerate(p):
                q[b] = m[a]
            jdx = index.get(tuple(q))
            if jdx is None:
                good = False
                break
            Cp[:, jdx] = C[:, i]
        if good and _span_rank(np.vstack([C, Cp]), rtol) == K:
            perms.append(p)
    perms = np.asarray(perms, dtype=np.int64).reshape(-1, n)
    conj = _span_rank(np.vstack([C, np.conj(C)]), rtol) == K
    return Symmetry(phases=phases, modulus=d, perms=perms, conjugation=bool(conj), sizes=sizes)


@dataclass(frozen=True)
class PairBasis:
    """A basis of real (k,k) functions in sparse half-pair form (see the module docstring).

    exponents: (N_k, N) degree-k monomials s_α = z^{I_α}
    alpha, beta: (n_pairs,) int, α ≤ β
    weight: (n_pairs,) complex ω_p
    func: (n_pairs,) int, nondecreasing, the function each pair belongs to
    n_functions: number of functions
    labels: short description of each function (orbit representative)
    """

    k: int
    exponents: np.ndarray = field(repr=False)
    alpha: np.ndarray = field(repr=False)
    beta: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    func: np.ndarray = field(repr=False)
    n_functions: int
    labels: tuple = field(repr=False, default=())
    description: str = ""

    def __post_init__(self):
        n = len(self.alpha)
        for name in ("beta", "weight", "func"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PairBasis.{name}: length {len(getattr(self, name))} != n_pairs {n}.")
        if n and np.any(np.diff(self.func) < 0):
            raise ValueError("PairBasis.func: pairs must be sorted by function index.")
        if n and np.any(self.alpha > self.beta):
            raise ValueError("PairBasis.alpha/beta: half pairs need alpha <= beta.")

    @property
    def n_pairs(self) -> int:
        return int(len(self.alpha))

    @property
    def n_monomials(self) -> int:
        return int(self.exponents.shape[0])

    @property
    def starts(self) -> np.ndarray:
        """Index of the first pair of each function (for np.add.reduceat)."""
        s = np.searchsorted(self.func, np.arange(self.n_functions))
        return s.astype(np.int64)

    def hermitian(self, coeffs) -> np.ndarray:
        """The dense Hermitian N_k × N_k matrix H of φ = Σ_a c_a f_a."""
        c = np.asarray(coeffs, dtype=np.float64)
        if c.shape != (self.n_functions,):
            raise ValueError(f"coeffs: expected shape ({self.n_functions},), received {c.shape}.")
        h = np.zeros((self.n_monomials, self.n_monomials), dtype=np.complex128)
        w = self.weight * c[self.func]
        np.add.at(h, (self.alpha, self.beta), w)
        np.add.at(h, (self.beta, self.alpha), np.conj(w))
        return h

    def subset(self, functions) -> "PairBasis":
        """The basis of the functions ``functions`` (increasing indices), renumbered 0, 1, …; pairs kept in order."""
        idx = np.asarray(functions, dtype=np.int64)
        if idx.ndim != 1 or np.any(np.diff(idx) <= 0) or (len(idx) and (idx[0] < 0 or idx[-1] >= self.n_functions)):
            raise ValueError(f"functions: expected increasing indices in [0, {self.n_functions}), received "
                             f"{idx.tolist()[:8]}{' …' if len(idx) > 8 else ''}.")
        new = np.full(self.n_functions, -1, dtype=np.int64)
        new[idx] = np.arange(len(idx))
        keep = new[self.func] >= 0
        labels = tuple(self.labels[i] for i in idx) if len(self.labels) == self.n_functions else ()
        return PairBasis(k=self.k, exponents=self.exponents, alpha=self.alpha[keep], beta=self.beta[keep],
                         weight=self.weight[keep], func=new[self.func[keep]], n_functions=int(len(idx)),
                         labels=labels, description=f"{len(idx)} of {self.description}")

    def combined(self, coeffs) -> "PairBasis":
        """One-function basis for φ = Σ_a c_a f_a (same pairs, weights ω_p c_{a(p)})."""
        c = np.asarray(coeffs, dtype=np.float64)
        if c.shape != (self.n_functions,):
            raise ValueError(f"coeffs: expected shape ({self.n_functions},), received {c.shape}.")
        w = self.weight * c[self.func]
        keep = w != 0
        return PairBasis(k=self.k, exponents=self.exponents, alpha=self.alpha[keep],
                         beta=self.beta[keep], weight=w[keep],
                         func=np.zeros(int(keep.sum()), dtype=np.int64), n_functions=1,
                         labels=("phi",), description=f"combination of {self.description}")


def _encode(rows: np.ndarray, base: int) -> np.ndarray:
    """Integer code of each row (entries in [0, base)), preserving lexicographic order."""
    code = np.zeros(rows.shape[:-1], dtype=np.int64)
    for j in range(rows.shape[-1]):
        code = code * base + rows[..., j]
    return code


def invariant_basis(n_coords: int, k: int, symmetry: Symmetry | None = None, *, exponents=None) -> PairBasis:
    """Basis of the Γ-invariant real (k,k) functions (Γ = ``symmetry``; None = no symmetry).

    Functions are real parts (and, without conjugation symmetry, imaginary parts) of orbit sums
    Σ_{γ∈Γ} z^{γI} z̄^{γJ} / |z|^{2k} over pairs (I,J) fixed by the phase group.  The constant
    function and functions vanishing on the hypersurface are NOT removed here: that is done
    numerically on the sample points (see :func:`ntkflow.cy.algebra.whiten`).

    ``exponents`` (N_k, N): the sections s_α = z^{I_α} to pair instead of all degree-k monomials — on a product
    of projective spaces the multi-degree sections (:meth:`ntkflow.cy.algebra.Factors.exponents`), each pair
    s_α s̄_β divided by Π_a |z^{(a)}|^{2k_a}. Permutations of ``symmetry`` that do not map this set to itself
    (an exchange of equal-size factors of different degrees) are dropped.
    """
    k = positive_int("k", k)
    n = positive_int("n_coords", n_coords)
    sym = symmetry if symmetry is not None else no_symmetry(n)
    if exponents is None:
        mons = monomials(n, k)
    else:
        mons = np.asarray(exponents, dtype=np.int64)
        if mons.ndim != 2 or mons.shape[1] != n or len(mons) == 0 or np.any(mons < 0):
            raise ValueError(f"exponents: expected non-negative integer rows (N_k, {n}), received shape {mons.shape}.")
        have = {tuple(r) for r in mons.tolist()}
        keep = [p for p in np.asarray(sym.perms) if {tuple(r) for r in mons[:, p].tolist()} == have]
        sym = Symmetry(phases=sym.phases, modulus=sym.modulus, perms=np.asarray(keep, dtype=np.int64).reshape(-1, n),
                       conjugation=sym.conjugation, sizes=sym.sizes)
    nk = len(mons)
    index = {tuple(m): i for i, m in enumerate(mons.tolist())}
    d = max(1, int(sym.modulus))
    # phase charges: pairs (α,β) allowed iff charge(α) == charge(β)
    if d > 1 and len(sym.phases) > 1:
        ch = (mons @ sym.phases.T) % d  # (N_k, n_phase)
        _, sig = np.unique(ch, axis=0, return_inverse=True)
        sig = np.asarray(sig).reshape(-1)
    else:
        sig = np.zeros(nk, dtype=np.int64)
    # all ordered allowed pairs (α, β)
    order = np.argsort(sig, kind="stable")
    bounds = np.flatnonzero(np.diff(sig[order])) + 1
    groups = np.split(order, bounds)
    a_list, b_list = [], []
    for g in groups:
        aa, bb = np.meshgrid(g, g, indexing="ij")
        a_list.append(aa.ravel())
        b_list.append(bb.ravel())
    A = np.concatenate(a_list)
    B = np.concatenate(b_list)
    # orbit codes under the permutation group (acting on both I and J simultaneously)
    base = int(mons.max()) + 1
    perms = sym.perms
    IA = mons[A]  # (P, n)
    IB = mons[B]
    codes = np.empty((len(A), len(perms)), dtype=np.int64)
    for j, p in enumerate(perms):
        # (σI)_i = I_{p_i}
        codes[:, j] = _encode(np.concatenate([IA[:, p], IB[:, p]], axis=1), base)
    canon = codes.min(axis=1)
    conj_codes = np.empty_like(codes)
    for j, p in enumerate(perms):
        conj_codes[:, j] = _encode(np.concatenate([IB[:, p], IA[:, p]], axis=1), base)
    canon_conj = conj_codes.min(axis=1)
    # a real function per unordered {orbit, conjugate orbit}
    key = np.minimum(canon, canon_conj)
    uniq, fid = np.unique(key, return_inverse=True)
    fid = np.asarray(fid).reshape(-1)
    n_orb = len(uniq)
    self_conj = np.zeros(n_orb, dtype=bool)
    np.logical_or.at(self_conj, fid, canon == canon_conj)
    # Real part: Re Σ_{(I,J) ∈ o} z^I z̄^J = ½ Σ_{o ∪ o*} ... ; with o = o* the sum is real already.
    # Ordered pair (α,β) in o ∪ o* gets H entry ½ (o ≠ o*) or 1 (o = o*) — summing over both
    # orderings then reproduces the Hermitian H.  Half pairs α<β carry H_{αβ}, α=β carry H_{αα}/2.
    funcs_alpha, funcs_beta, funcs_w, funcs_id, labels = [], [], [], [], []
    half = A <= B
    h_re = np.where(self_conj[fid], 1.0, 0.5)
    for part in ("re", "im"):
        if part == "im" and sym.conjugation:
            break
        if part == "re":
            hval = h_re.astype(np.complex128)
            valid_f = np.ones(n_orb, dtype=bool)
            # H_{αβ} for ordered pair in the orbit o (canon==key) or o* (canon_conj==key)
        else:
            # Im Σ_o = (Σ_o − Σ_{o*}) / 2i : H_{αβ} = 1/(2i) for (α,β) ∈ o, −1/(2i) for o*
            in_o = canon == uniq[fid]
            hval = np.where(in_o, 0.5 / 1j, -0.5 / 1j).astype(np.complex128)
            valid_f = ~self_conj
        sel = half & valid_f[fid]
        a, b = A[sel], B[sel]
        w = hval[sel].copy()
        w[a == b] *= 0.5
        f = fid[sel]
        funcs_alpha.append(a)
        funcs_beta.append(b)
        funcs_w.append(w)
        offset = sum(len(x) for x in labels)
        fmap = -np.ones(n_orb, dtype=np.int64)
        fmap[valid_f] = np.arange(int(valid_f.sum())) + offset
        funcs_id.append(fmap[f])
        lab = []
        for o in np.flatnonzero(valid_f):
            code = int(uniq[o])
            ex = []
            for _ in range(2 * n):
                ex.append(code % base)
                code //= base
            ex = ex[::-1]
            lab.append(f"{part}:z^{tuple(ex[:n])}zb^{tuple(ex[n:])}")
        labels.append(lab)
    alpha = np.concatenate(funcs_alpha)
    beta = np.concatenate(funcs_beta)
    weight = np.concatenate(funcs_w)
    func = np.concatenate(funcs_id)
    # drop exactly-zero weights (imag part of self-conjugate pairs cannot occur: filtered above)
    srt = np.lexsort((beta, alpha, func))
    alpha, beta, weight, func = alpha[srt], beta[srt], weight[srt], func[srt]
    labs = tuple(x for lab in labels for x in lab)
    kind = "all" if sym.trivial else "invariant"  # a trivial group: every (k,k) function is invariant
    desc = (f"degree-{k} {kind} (k,k) functions: {len(labs)} functions, {len(alpha)} half pairs, "
            f"N_k = {nk}; group {sym.describe()}")
    return PairBasis(k=k, exponents=mons, alpha=alpha, beta=beta, weight=weight, func=func,
                     n_functions=len(labs), labels=labs, description=desc)


def full_basis(n_coords: int, k: int) -> PairBasis:
    """All real (k,k) functions (N_k² of them): the feature space of the plain u^k kernel."""
    return invariant_basis(n_coords, k, no_symmetry(n_coords))


def n_monomials(n_vars: int, k: int) -> int:
    return math.comb(k + n_vars - 1, n_vars - 1)
