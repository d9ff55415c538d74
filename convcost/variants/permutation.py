"""The grouped variant's channel permutation: which outputs and inputs to put in one group.

Keeping G diagonal blocks loses whatever energy lies between channels of different groups;
reordering channels first can keep more. Finding the best order is a balanced co-clustering
problem, so a heuristic (documented in docs/approx.md) picks one: balanced spectral
co-clustering seeds the groups and exact two-group exchanges polish them.
"""

from __future__ import annotations

import numpy as np

#: Balanced k-means rounds seeding the grouped variant's channel permutation.
KMEANS_ROUNDS = 2


def dense_energy(e: np.ndarray) -> np.ndarray:
    """Per-group energies (g, ci, co) -> the dense (C_out, C_in) energy matrix (zero off-group)."""
    g, ci, co = e.shape
    dense = np.zeros((g * co, g * ci))
    for i in range(g):
        dense[i * co:(i + 1) * co, i * ci:(i + 1) * ci] = e[i].T
    return dense


def kept_mass(e: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """Energy inside the blocks where an output's label equals an input's label."""
    return float(np.sum(e, where=rows[:, None] == cols[None, :]))


def _group_sums(e: np.ndarray, labels: np.ndarray, groups: int) -> np.ndarray:
    """score[i, k] = sum of e[i, j] over the j labelled k."""
    return np.asarray(e @ np.eye(groups)[labels])


def _top(diff: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest entries, ties going to the lower index: the first k of a stable
    descending sort, found with a partition instead of a sort."""
    n = len(diff)
    if k >= n:
        return np.ones(n, dtype=bool)
    if k <= 0:
        return np.zeros(n, dtype=bool)
    kth = np.partition(diff, n - k)[n - k]
    mask = diff > kth
    need = k - int(np.count_nonzero(mask))
    if need:
        mask[np.flatnonzero(diff == kth)[:need]] = True
    return mask


def _balanced_refine(score: np.ndarray, labels: np.ndarray, sweeps: int = 10) -> np.ndarray:
    """Maximize sum(score[i, labels[i]]) keeping group sizes: exact two-group exchanges, repeated.

    For two groups the best split of their members sorts them by score[:, a] - score[:, b];
    sweeping the pairs that can still gain until nothing moves is block-coordinate ascent.
    """
    labels = labels.copy()
    n, groups = score.shape
    eps = 1e-12 * float(np.abs(score).sum() + 1e-300)
    rows = np.arange(n)
    for _ in range(sweeps):
        # best[a, b]: the most one member of a gains by moving to b; a swap needs both ways > 0
        gain = score - score[rows, labels][:, None]
        best = np.full((groups, groups), -np.inf)
        for a in range(groups):
            mine = gain[labels == a]
            if len(mine):
                best[a] = mine.max(axis=0)
        pairs = np.argwhere(np.triu(best + best.T > eps, 1))
        moved = False
        for a, b in pairs.tolist():
            in_a = labels == a
            members = np.flatnonzero(in_a | (labels == b))
            was_a = in_a[members]
            diff = score[members, a] - score[members, b]
            now_a = _top(diff, int(np.count_nonzero(was_a)))
            if float(diff[now_a].sum() - diff[was_a].sum()) > eps:
                labels[members] = np.where(now_a, a, b)
                moved = True
        if not moved:
            break
    return labels


def _alternate(e: np.ndarray, rows: np.ndarray, cols: np.ndarray, groups: int,
               rounds: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    """Alternately re-assign outputs (inputs fixed) and inputs (outputs fixed); mass never drops."""
    best = kept_mass(e, rows, cols)
    for _ in range(rounds):
        rows = _balanced_refine(_group_sums(e, cols, groups), rows)
        score = _group_sums(e.T, rows, groups)
        cols = _balanced_refine(score, cols)
        mass = float(score[np.arange(len(cols)), cols].sum())
        if mass <= best * (1 + 1e-3):  # converged (to 0.1 % of the kept energy)
            best = max(best, mass)
            break
        best = mass
    return rows, cols, best


def _spectral_labels(e: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced spectral co-clustering (Dhillon 2001): rows and columns embedded together."""
    n_out, n_in = e.shape
    d_r, d_c = e.sum(axis=1), e.sum(axis=0)
    inv_r = np.where(d_r > 0, 1 / np.sqrt(np.where(d_r > 0, d_r, 1)), 0.0)
    inv_c = np.where(d_c > 0, 1 / np.sqrt(np.where(d_c > 0, d_c, 1)), 0.0)
    a = e * inv_r[:, None]
    a *= inv_c[None, :]  # in place: no second matrix-sized temporary
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((n_in, min(groups + 4, n_in))))[0]
    for _ in range(8):  # subspace iteration for the top singular vectors
        q = np.linalg.qr(a.T @ (a @ q))[0]
    u, _, vt = np.linalg.svd(a @ q, full_matrices=False)
    u, v = u[:, :groups], (q @ vt.T)[:, :groups]
    points = np.vstack([u * inv_r[:, None], v * inv_c[:, None]])
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    points = points / np.where(norms > 0, norms, 1.0)
    centers = [points[int(np.argmax(norms))]]  # farthest-point initialisation
    for _ in range(1, groups):
        dist = np.min([np.sum((points - c) ** 2, axis=1) for c in centers], axis=0)
        centers.append(points[int(np.argmax(dist))])
    rows, cols = np.arange(n_out) * groups // n_out, np.arange(n_in) * groups // n_in
    for _ in range(KMEANS_ROUNDS):  # balanced k-means: rows and columns keep equal group sizes
        c = np.array(centers)
        dist = -np.sum((points[:, None, :] - c[None]) ** 2, axis=2)
        rows = _balanced_refine(dist[:n_out], rows)
        cols = _balanced_refine(dist[n_out:], cols)
        labels = np.concatenate([rows, cols])
        centers = [points[labels == k].mean(axis=0) for k in range(groups)]
    return rows, cols


def block_labels(e: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Output and input group labels (G equal groups each) keeping most of the energy in blocks.

    Balanced spectral co-clustering seeds the groups; alternating exact two-group exchanges
    polish them. Should that keep less than the plain contiguous grouping, the plain one is
    returned, so the permuted error never exceeds the unpermuted one.
    """
    n_out, n_in = e.shape
    identity = (np.arange(n_out) * groups // n_out, np.arange(n_in) * groups // n_in)
    if groups == 1 or e.sum() <= 0:
        return identity
    rows, cols, mass = _alternate(e, *_spectral_labels(e, groups), groups)
    return (rows, cols) if mass > kept_mass(e, *identity) else identity
