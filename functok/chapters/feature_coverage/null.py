"""A null model for Table 1: how many features would as many positions drawn at random cover?

Table 1's coverage of the k most frequent tokens counts the features fired by any of their N_k
occurrences. A dense SAE (many features active per position) covers most of its dictionary with any
N_k positions, frequent tokens or not, so the number alone says little. The null draws N_k positions
uniformly without replacement from the sample's positions (the graph's positions: BOS left out) and
measures the coverage (share of d_sae fired at least once) of those, over `n_draws` seeded draws, for
every k = 1..top_k: its mean and a 95% interval (the 2.5 and 97.5 percentiles of the draws).

One pass serves every k and every draw. Draw d gives each position p a rank, `ranks[d, p]`, a uniform
random permutation of 0..n_positions-1; the N positions of rank < N are then a uniform sample without
replacement of size N. While the pass streams, each layer keeps `min_rank[d, f]`, the smallest rank
of any position that fired feature f (n_positions if none did). Feature f is covered by the first N
positions of draw d exactly when min_rank[d, f] < N, so coverage(d, k) = mean over f of
(min_rank[d, f] < N_k), read off after the pass for any N.

Cost: ranks are int32 [n_draws, n_positions] on the host, min_rank int32 [n_draws, d_sae] per layer on
the graph's device (a batch's slice of ranks is copied there). At the paper's scale (5M tokens,
d_sae 2^20, three layers, 20 draws): ranks 400 MB, min_rank 84 MB per layer (252 MB), and the same
84 MB per layer in the cache. Time: on the CPU `np.minimum.at` takes about 10 ns per firing and draw
(5e8 firings x 20 draws: a few minutes per layer); on a GPU a `scatter_reduce_` per draw, small beside
the forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def permutation_ranks(n_positions: int, n_draws: int, seed: int) -> np.ndarray:
    """int32[n_draws, n_positions]: row d is a uniform random permutation of 0..n_positions-1 (the
    rank of each position in draw d), from numpy's default_rng(seed)."""
    if n_positions >= 2**31:
        raise ValueError(f"n_positions: got {n_positions}; int32 ranks hold fewer than 2^31 positions")
    rng = np.random.default_rng(seed)
    out = np.empty((n_draws, n_positions), dtype=np.int32)
    for d in range(n_draws):
        out[d] = rng.permutation(n_positions)
    return out


def drawn_positions(ranks: np.ndarray, draw: int, n: int) -> np.ndarray:
    """The n positions sampled (without replacement) by draw `draw`: those of rank < n."""
    return np.flatnonzero(ranks[draw] < n)


class CoverageNull:
    """Accumulates min_rank per layer while the pass streams.

    Args:
        n_positions: positions the pass will feed (non-excluded), in stream order.
        d_sae: layer -> number of SAE features.
        n_draws, seed: the draws (`permutation_ranks`).
        device: "cpu" (numpy) or a torch device holding min_rank (the codes' device).
        backend: "numpy" (`np.minimum.at`, several times faster than torch on a CPU) or "torch"
            (`scatter_reduce_` on `device`); default: numpy on "cpu", torch elsewhere.

    Call `update(layer, offset, n_rows, rows, features)` once per layer and batch, where the batch's
    positions are offset .. offset+n_rows-1 of the stream and (rows, features) its non-zeros (rows
    index the batch's positions); then `min_rank(layer)`.
    """

    def __init__(
        self, n_positions: int, d_sae: dict, n_draws: int, seed: int, device: str = "cpu", backend: str | None = None
    ) -> None:
        self.n_positions, self.n_draws, self.seed = int(n_positions), int(n_draws), int(seed)
        self.device = str(device)
        backend = backend or ("numpy" if self.device == "cpu" else "torch")
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend: got {backend!r}; expected 'numpy' or 'torch'")
        self.ranks = permutation_ranks(self.n_positions, self.n_draws, self.seed)
        if backend == "numpy":
            self._min = {L: np.full((self.n_draws, int(d)), self.n_positions, np.int32) for L, d in d_sae.items()}
        else:
            import torch

            self._min = {
                L: torch.full((self.n_draws, int(d)), self.n_positions, dtype=torch.int32, device=self.device)
                for L, d in d_sae.items()
            }

    def update(self, layer, offset: int, n_rows: int, rows: Any, features: Any) -> None:
        if offset < 0 or offset + n_rows > self.n_positions:
            raise ValueError(f"positions {offset}..{offset + n_rows - 1} out of range [0, {self.n_positions})")
        mr = self._min[layer]
        batch = self.ranks[:, offset : offset + n_rows]
        if isinstance(mr, np.ndarray):
            rows, feats = _numpy(rows), _numpy(features)
            for d in range(self.n_draws):
                np.minimum.at(mr[d], feats, batch[d][rows])
        else:
            import torch

            rows = torch.as_tensor(rows).to(mr.device, torch.long)
            feats = torch.as_tensor(features).to(mr.device, torch.long)
            batch = torch.from_numpy(np.ascontiguousarray(batch)).to(mr.device)
            for d in range(self.n_draws):
                mr[d].scatter_reduce_(0, feats, batch[d][rows], reduce="amin")

    def min_rank(self, layer) -> np.ndarray:
        """int32[n_draws, d_sae]: per draw, the smallest rank of a position that fired each feature
        (n_positions: never fired)."""
        mr = self._min[layer]
        return mr if isinstance(mr, np.ndarray) else mr.cpu().numpy()


def _numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(np.int64, copy=False)
    return x.detach().cpu().numpy().astype(np.int64, copy=False)


def covered_counts(min_rank: np.ndarray, n_positions_k) -> np.ndarray:
    """int64[n_draws, K]: features fired by the first N_k positions of each draw."""
    n_k = np.asarray(n_positions_k, dtype=np.int64)
    srt = np.sort(min_rank, axis=1)
    return np.stack([np.searchsorted(row, n_k, side="left") for row in srt]).astype(np.int64)


def coverage_draws(min_rank: np.ndarray, n_positions_k) -> np.ndarray:
    """float64[n_draws, K]: coverage (share of d_sae) of the first N_k positions of each draw."""
    return covered_counts(min_rank, n_positions_k) / min_rank.shape[1]


def null_summary(min_rank: np.ndarray, n_positions_k) -> dict:
    """{"mean", "lo", "hi" (2.5 / 97.5 percentiles over draws), "n_draws", "n_positions" (N_k)}: shares
    of d_sae, computed on integer counts (so that equal counts give equal shares, exactly)."""
    c, d = covered_counts(min_rank, n_positions_k), min_rank.shape[1]
    lo, hi = np.percentile(c, [2.5, 97.5], axis=0) if c.size else (np.zeros(0), np.zeros(0))
    return {
        "mean": [float(v) / d for v in c.mean(axis=0)] if c.size else [],
        "lo": [float(v) / d for v in lo],
        "hi": [float(v) / d for v in hi],
        "n_draws": int(min_rank.shape[0]),
        "n_positions": [int(n) for n in n_positions_k],
    }


def topk_positions(counts: np.ndarray, ranking: np.ndarray, k: int) -> list[int]:
    """N_1..N_k: occurrences of the 1..k most frequent tokens (ranking: token ids, most frequent first)."""
    return [int(v) for v in np.cumsum(np.asarray(counts)[np.asarray(ranking[:k], dtype=np.int64)])]
