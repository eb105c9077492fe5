"""E-Divisive means change-point detection (Matteson & James, 2014), as MongoDB's performance CI uses it.

Why our own: apache-otava 0.8.0 (the only release on PyPI) pins numpy 2.2.0.* and scipy < 1.17 on
Python 3.11 and pulls Google BigQuery, Postgres and Slack clients; installing it would downgrade the
numpy 2.4 / scipy 1.17 every other part of the lab runs on. This module implements the same algorithm
(the one otava calls `compute_change_points_orig`) with numpy.

Algorithm. For a split of a segment into X = z[a:τ] and Y = z[τ:κ] (sizes n, m ≥ min_size),
    Q(τ, κ) = n·m/(n+m) · ( 2/(n·m) Σ|X_i − Y_j|^p − 2/(n(n−1)) Σ_{i<k}|X_i − X_k|^p
                                                      − 2/(m(m−1)) Σ_{j<k}|Y_j − Y_k|^p )
(the scaled energy distance, p = 1). Each segment's best (τ, κ) is found from 2-D prefix sums of the
distance matrix, all candidates at once. The best candidate over all segments is kept when a permutation
test says it is significant: the series is shuffled within each segment `permutations` times, and
p = (1 + #{permuted max Q ≥ observed Q}) / (permutations + 1) must be ≤ alpha. Then the search repeats
on the new segments, until a candidate is not significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first index of the new segment
    q: float
    p_value: float


def e_divisive(
    series: np.ndarray,
    *,
    alpha: float = 0.05,
    permutations: int = 199,
    min_size: int = 3,
    power: float = 1.0,
    seed: int = 0,
) -> list[ChangePoint]:
    """Change points of `series` (1-D, finite), sorted by index."""
    z = np.asarray(series, dtype=np.float64)
    if min_size < 2:
        raise ValueError("min_size must be at least 2 (within-segment distances need two points)")
    rng = np.random.default_rng(seed)
    found: list[ChangePoint] = []
    while True:
        bounds = [0, *sorted(c.index for c in found), z.size]
        segments = list(pairwise(bounds))
        candidate = _best_over_segments(z, segments, min_size, power)
        if candidate is None:
            break
        index, q = candidate
        exceeded = 0
        for _ in range(permutations):
            shuffled = z.copy()
            for a, b in segments:
                rng.shuffle(shuffled[a:b])
            permuted = _best_over_segments(shuffled, segments, min_size, power)
            exceeded += permuted is not None and permuted[1] >= q
            if (1 + exceeded) / (permutations + 1) > alpha:
                break  # already not significant: the remaining permutations cannot change that
        p_value = (1 + exceeded) / (permutations + 1)
        if p_value > alpha:
            break
        found.append(ChangePoint(index, q, p_value))
    return sorted(found, key=lambda c: c.index)


def _best_over_segments(
    z: np.ndarray, segments: list[tuple[int, int]], min_size: int, power: float
) -> tuple[int, float] | None:
    best: tuple[int, float] | None = None
    for a, b in segments:
        split = best_split(z[a:b], min_size, power)
        if split is not None and (best is None or split[1] > best[1]):
            best = (a + split[0], split[1])
    return best


def best_split(z: np.ndarray, min_size: int = 3, power: float = 1.0) -> tuple[int, float] | None:
    """(τ, Q) maximising Q(τ, κ) over τ and κ within z (None when z is shorter than 2·min_size)."""
    n = z.size
    if n < 2 * min_size:
        return None
    distances = np.abs(z[:, None] - z[None, :]) ** power
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = distances.cumsum(axis=0).cumsum(axis=1)  # prefix[i, j] = Σ_{a<i, b<j} D[a, b]
    tau = np.arange(min_size, n - min_size + 1)[:, None]
    kappa = np.arange(2 * min_size, n + 1)[None, :]
    valid = kappa - tau >= min_size
    t = np.broadcast_to(tau, valid.shape)
    k = np.broadcast_to(kappa, valid.shape)
    diagonal = np.diagonal(prefix)
    between = prefix[t, k] - diagonal[t]  # Σ_{i<τ≤j<κ} D[i, j]
    within_x = diagonal[t] / 2  # Σ_{i<k<τ} D[i, k]
    within_y = (diagonal[k] - 2 * prefix[t, k] + diagonal[t]) / 2  # Σ_{τ≤j<l<κ} D[j, l]
    size_x, size_y = t.astype(np.float64), (k - t).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        energy = (
            2 * between / (size_x * size_y)
            - 2 * within_x / (size_x * (size_x - 1))
            - 2 * within_y / (size_y * (size_y - 1))
        )
        q = np.where(valid, size_x * size_y / (size_x + size_y) * energy, -np.inf)
    row, col = np.unravel_index(int(np.argmax(q)), q.shape)
    return int(tau[row, 0]), float(q[row, col])
