"""The two storage back ends of `TokenFeatureGraph` (functok.sae.graph): numpy buckets on the CPU,
torch tensors on a GPU. Both keep sorted (key, count) runs per bucket of token ids."""

from __future__ import annotations

from typing import Any

import numpy as np


class NumpyBuckets:
    """Array ops on host memory (numpy)."""

    name = "numpy"

    def __init__(self) -> None:
        self.key_dtype = np.uint32  # bucket-local keys: (token - bucket start) * d_sae + feature < 2^32
        self.count_dtype = np.int32

    def asarray(self, x: Any, dtype=None) -> np.ndarray:
        if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=dtype)

    def concat(self, xs):
        return np.concatenate(xs) if len(xs) > 1 else xs[0]

    def sort_(self, x):
        x.sort()
        return x

    def run_lengths(self, s):
        """Sorted keys -> (unique keys, counts as int32)."""
        if s.size == 0:
            return s.copy(), np.zeros(0, np.int32)
        starts = np.empty(s.size, dtype=bool)
        starts[0] = True
        np.not_equal(s[1:], s[:-1], out=starts[1:])
        idx = np.flatnonzero(starts)
        del starts
        counts = np.empty(idx.size, dtype=np.int32)
        np.subtract(idx[1:], idx[:-1], out=counts[:-1], casting="unsafe")
        counts[-1] = s.size - idx[-1]
        return s[idx], counts

    def searchsorted(self, a, v):
        return np.searchsorted(a, v)

    def arange(self, n):
        return np.arange(n, dtype=np.int64)

    def empty(self, n, dtype):
        return np.empty(n, dtype=dtype)

    def ones_bool(self, n):
        return np.ones(n, dtype=bool)

    def zeros(self, n, dtype):
        return np.zeros(n, dtype=dtype)

    def bincount(self, x, minlength, weights=None):
        out = np.bincount(x, weights=weights, minlength=minlength)
        return out if weights is None else np.rint(out).astype(np.int64)

    def to_numpy(self, x):
        return x

    def astype(self, x, dtype):
        return x.astype(dtype, copy=False)


class TorchBuckets:
    """The same ops with torch on `device` (used for CUDA; on the CPU only to test this path)."""

    name = "torch"

    def __init__(self, device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.key_dtype = torch.int64  # torch has no full uint32 support; the GPU has memory to spare
        self.count_dtype = torch.int32

    def asarray(self, x: Any, dtype=None):
        t = self.torch.as_tensor(x, device=self.device)
        return t if dtype is None else t.to(dtype)

    def concat(self, xs):
        return self.torch.cat(xs) if len(xs) > 1 else xs[0]

    def sort_(self, x):
        return self.torch.sort(x).values

    def run_lengths(self, s):
        u, c = self.torch.unique_consecutive(s, return_counts=True)
        return u, c

    def searchsorted(self, a, v):
        return self.torch.searchsorted(a, v)

    def arange(self, n):
        return self.torch.arange(n, device=self.device)

    def empty(self, n, dtype):
        return self.torch.empty(n, dtype=dtype, device=self.device)

    def ones_bool(self, n):
        return self.torch.ones(n, dtype=self.torch.bool, device=self.device)

    def zeros(self, n, dtype):
        return self.torch.zeros(n, dtype=dtype, device=self.device)

    def bincount(self, x, minlength, weights=None):
        if weights is None:
            return self.torch.bincount(x, minlength=minlength)
        return self.torch.zeros(minlength, dtype=self.torch.int64, device=self.device).index_add_(
            0, x, weights.to(self.torch.int64)
        )

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def astype(self, x, dtype):
        return x.to(dtype)
