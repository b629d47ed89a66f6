"""Decompositions the diagnostics share, all in float64.

`svd64` computes the thin SVD through the eigendecomposition of the smaller Gram
matrix (float64 `eigh`): 4–6× cheaper than LAPACK's gesdd on the CPU at transformer
shapes, and as accurate for the top singular vectors the angles use (tests check it
against `torch.linalg.svd` and scipy). `principal_angles` uses the sine formula for
small angles, the cosine formula for large ones (as scipy.linalg.subspace_angles does):
arccos of a cosine near 1 loses half the digits exactly where rotations are small.

The Gram route resolves singular values down to about √ε·σ₁ ≈ 1e-8·σ₁; values below
FLOOR·σ₁ are numerically zero and reported as 0 (so a rank-r update shows exactly r).

`factored_svd64` decomposes a product L R (a LoRA update, rank r) from its factors: a QR of each
and an r × r SVD, O((m + n) r²) instead of the O(m n min(m, n)) of any route through the m × n
matrix; exact, and no Gram squaring (σ resolved to ε·σ₁).
"""

import torch

FLOOR = 1e-7


def _sqrt_spectrum(eigvals: torch.Tensor) -> torch.Tensor:
    """Descending singular values from ascending Gram eigenvalues, with the resolution floor."""
    s = eigvals.flip(0).clamp_min(0).sqrt()
    return torch.where(s < FLOOR * s[0], torch.zeros_like(s), s) if s.numel() else s


def svd64(w: torch.Tensor, k: int | None = None):
    """(U[:, :k], S (all, descending), V[:, :k]) of `w` in float64; k=None keeps all."""
    w = w.detach().to(torch.float64)
    m, n = w.shape
    wide = m < n
    gram = w @ w.T if wide else w.T @ w  # (p, p), p = min(m, n)
    eigvals, eigvecs = torch.linalg.eigh(gram)
    s, eigvecs = _sqrt_spectrum(eigvals), eigvecs.flip(1)  # descending
    k = s.numel() if k is None else min(k, s.numel())
    small = eigvecs[:, :k]  # vectors of the short side
    other = (w.T @ small if wide else w @ small) / s[:k].clamp_min(torch.finfo(torch.float64).tiny)
    other = _orthonormalize(other, s[:k])
    return (small, s, other) if wide else (other, s, small)


def factored_svd64(left: torch.Tensor, right: torch.Tensor, k: int | None = None):
    """(U[:, :k], S (all min(m, n), descending, zeros past the rank), V[:, :k]) of left @ right in float64.

    left (m, r), right (r, n); columns past the product's rank (σ = 0) are some orthonormal completion.
    """
    left, right = left.detach().to(torch.float64), right.detach().to(torch.float64)
    m, n = left.shape[0], right.shape[1]
    q_left, r_left = torch.linalg.qr(left)  # (m, r'), (r', r)
    q_right, r_right = torch.linalg.qr(right.T)  # (n, r''), (r'', r)
    u, core, vh = torch.linalg.svd(r_left @ r_right.T)  # (r', r'') core of ΔW = Q_L core Q_Rᵀ
    s = torch.zeros(min(m, n), dtype=torch.float64, device=left.device)
    s[: core.numel()] = core
    if s.numel() and s[0] > 0:
        s = torch.where(s < FLOOR * s[0], torch.zeros_like(s), s)  # as the Gram route reports ranks
    k = s.numel() if k is None else min(k, s.numel())
    return _complete(q_left @ u, k), s, _complete(q_right @ vh.T, k)


def _complete(q: torch.Tensor, k: int) -> torch.Tensor:
    """The first k columns of orthonormal `q` (p, c), completed past c by orthonormal columns orthogonal to it.

    Past the rank the singular vectors are any orthonormal completion (the Gram route returns one too);
    here a seeded Gaussian one, so every caller gets k columns, as from a full-rank matrix.
    """
    if q.shape[1] >= k:
        return q[:, :k]
    extra = torch.randn(q.shape[0], k - q.shape[1], dtype=q.dtype, generator=torch.Generator().manual_seed(0)).to(q.device)
    for _ in range(2):  # projected off span(q) twice: one pass leaves rounding-level components (Gram–Schmidt)
        extra = extra - q @ (q.T @ extra)
    return torch.cat([q, torch.linalg.qr(extra)[0]], 1)


def decompose64(w: torch.Tensor, k: int, factors=None):
    """(U[:, :k], S (all, descending), V[:, :k]) of `w`, or (None, S, None) when k = 0 (values only, cheaper).

    `factors` (L, R) with L @ R = w: the exact SVD from them (factored_svd64) instead of from `w`.
    """
    if factors is not None:
        u, s, v = factored_svd64(*factors, max(k, 1))  # k = 0: no completion of the vectors, which are dropped
        return (u, s, v) if k else (None, s, None)
    if k:
        return top_svd64(w, k)
    return None, svdvals64(w), None


def _orthonormalize(vectors: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Re-orthonormalise W v / σ columns (lost accuracy where σ ≈ 0), keeping signs."""
    q, r = torch.linalg.qr(vectors)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1
    return q * signs


def svdvals64(w: torch.Tensor) -> torch.Tensor:
    """All singular values of `w`, descending, float64."""
    w = w.detach().to(torch.float64)
    gram = w @ w.T if w.shape[0] < w.shape[1] else w.T @ w
    return _sqrt_spectrum(torch.linalg.eigvalsh(gram))


EXACT_BELOW = 2048  # short side up to which top-k vectors come from the exact float64 SVD


def top_svd64(w: torch.Tensor, k: int, exact_below: int = EXACT_BELOW):
    """(U[:, :k], S (all, exact, descending), V[:, :k]); vectors randomized for large matrices."""
    if min(w.shape) <= exact_below:
        return svd64(w, k)
    u, _, v = torch.svd_lowrank(w.detach().to(torch.float64), q=k + 16, niter=6)
    return u[:, :k], svdvals64(w), v[:, :k]


def top_pair(w: torch.Tensor, k: int, exact_below: int = EXACT_BELOW) -> tuple[torch.Tensor, torch.Tensor]:
    """(U[:, :k], V[:, :k]) from one decomposition; randomized (torch.svd_lowrank) for large matrices."""
    if min(w.shape) <= exact_below:
        u, _, v = svd64(w, k)
        return u, v
    u, _, v = torch.svd_lowrank(w.detach().to(torch.float64), q=k + 16, niter=6)
    return u[:, :k], v[:, :k]


def top_right_vectors(w: torch.Tensor, k: int, exact_below: int = EXACT_BELOW) -> torch.Tensor:
    """Top-k right singular vectors (n, k); randomized (torch.svd_lowrank) for large matrices."""
    if min(w.shape) <= exact_below:
        return svd64(w, k)[2]
    _, _, v = torch.svd_lowrank(w.detach().to(torch.float64), q=k + 16, niter=6)
    return v[:, :k]


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(a) and span(b), orthonormal columns."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    cross = a.T @ b
    cos = torch.linalg.svdvals(cross).clamp(-1, 1)  # descending cosines: ascending angles
    residual = b - a @ cross if a.shape[1] >= b.shape[1] else a - b @ cross.T  # (m, k): its σ are the sines
    sin = torch.linalg.eigvalsh(residual.T @ residual).clamp_min(0).sqrt().clamp(max=1)[: cos.numel()]  # ascending
    sin = torch.nn.functional.pad(sin, (0, cos.numel() - sin.numel()))
    return torch.where(cos**2 >= 0.5, torch.arcsin(sin), torch.arccos(cos))
