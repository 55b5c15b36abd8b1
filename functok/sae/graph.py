"""The token <-> SAE-feature bipartite graph of the paper's §3 (Fig 5, Table 1), accumulated in one pass.

An edge joins token t and feature f when t activates f (the SAE feature's output is > 0) in at least
one context; the graph is unweighted, but every edge also carries the number of occurrences of t
that fired f, so per-feature firing counts can be split by any token grouping afterwards (function /
content, frequency-matched groups, ...) without a second pass.

How it stays fast and small (the paper's shape: vocab 256,000, d_sae 2^20, 5M tokens, ~100 active
features per token, i.e. ~5e8 firings but far fewer distinct edges):

- each firing becomes one integer key ``token * d_sae + feature``; keys are buffered and, every
  ``buffer_keys`` firings, sorted and run-length encoded into (unique key, count) pairs;
- the distinct edges live in buckets of ``R`` consecutive token ids, each a sorted array of keys
  relative to the bucket (``uint32`` on the CPU, since ``R * d_sae <= 2^32``) with an ``int32``
  count; a flush merges its sorted run into every bucket (binary search + one linear insertion), so
  memory is about 8 bytes per distinct edge and a merge never copies more than one bucket at a time;
- degree, connected features, coverage and firing counts are read off the sorted keys.

Cost: sorting the firings is linear in the data; each flush also rewrites the buckets it touches,
so merging grows with (number of flushes) x (distinct edges) and is about two thirds of the build at
the paper's shape (benchmarks/graph_accumulation.py: ~1-2 minutes and ~2 GB for 5M tokens on 2
cores). A larger `buffer_keys` means fewer flushes for more transient memory.

On the CPU the sorts and merges use numpy (its SIMD sort is several times faster than torch's CPU
sort here); with ``device="cuda"`` the same algorithm runs with torch ops on the GPU, so the
non-zeros of the SAE encoder never leave the device until results are read. Results are numpy
arrays. ``numpy.unique`` is deliberately not used: in numpy 2.4 it is ~50x slower than sort + diff.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from functok.sae.graph_backends import NumpyBuckets, TorchBuckets

FORMAT = "functok.token_feature_graph/1"
_U32 = 2**32


class TokenFeatureGraph:
    """Streaming accumulator of the token <-> feature bipartite graph of one SAE.

    Args:
        vocab_size: number of token ids (tokens are 0 .. vocab_size-1).
        d_sae: number of SAE features.
        device: "cpu" (numpy on host memory) or a torch device such as "cuda" (torch ops on it).
        buffer_keys: firings buffered before a sort-and-merge; bounds the transient memory
            (about 25 bytes per buffered firing during a flush).
        backend: "numpy" or "torch" to override the choice made from `device`.

    Feed it with `update` (token ids and feature activations) or `update_sparse` (non-zeros already
    extracted, e.g. by `functok.sae.loading.SparseEncoder`). Every query flushes the buffer first.
    """

    def __init__(
        self,
        vocab_size: int,
        d_sae: int,
        device: str = "cpu",
        *,
        buffer_keys: int = 2**24,
        n_buckets: int = 64,
        backend: str | None = None,
    ) -> None:
        if vocab_size < 1 or d_sae < 1:
            raise ValueError(f"vocab_size and d_sae must be >= 1; got {vocab_size}, {d_sae}")
        if d_sae > _U32:
            raise ValueError(f"d_sae: got {d_sae}; expected at most 2^32")
        self.vocab_size, self.d_sae = int(vocab_size), int(d_sae)
        self.device = str(device)
        backend = backend or ("numpy" if self.device == "cpu" else "torch")
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend: got {backend!r}; expected 'numpy' or 'torch'")
        self._ops = NumpyBuckets() if backend == "numpy" else TorchBuckets(self.device)
        self.buffer_keys = int(buffer_keys)
        # R tokens per bucket, so that a bucket-local key fits 32 bits.
        self.tokens_per_bucket = max(1, min(math.ceil(self.vocab_size / n_buckets), _U32 // self.d_sae))
        nb = math.ceil(self.vocab_size / self.tokens_per_bucket)
        o = self._ops
        self._keys = [o.empty(0, o.key_dtype) for _ in range(nb)]
        self._counts = [o.empty(0, o.count_dtype) for _ in range(nb)]
        self._token_counts = o.zeros(self.vocab_size, np.int64 if o.name == "numpy" else o.torch.int64)
        self._pending: list = []  # torch backend (and oversized numpy batches): key arrays to concatenate
        self._buf = None  # numpy backend: preallocated int64[buffer_keys] of pending keys
        self._n_pending = 0
        self.n_firings = 0  # non-zero (token occurrence, feature) pairs seen
        self.metadata: dict = {}  # free-form, stored by save()

    # ------------------------------------------------------------------------------------------
    # Accumulation

    def update(self, token_ids, feature_acts) -> None:
        """Add a batch: token_ids LongTensor[n] (or [batch, pos]) and their SAE feature activations
        Tensor[n, d_sae] (or [batch, pos, d_sae]): dense, or torch sparse COO / CSR. A feature fires
        where its activation is > 0."""
        import torch

        tok = torch.as_tensor(token_ids)
        acts = feature_acts
        if acts.layout == torch.sparse_csr:
            if tok.dim() != 1:
                raise ValueError("update: with a CSR matrix, token_ids must be 1-D [n]")
            crow, col, val = acts.crow_indices(), acts.col_indices(), acts.values()
            rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
            keep = val > 0
            rows, cols = rows[keep], col[keep]
            n, d = acts.shape
        elif acts.layout == torch.sparse_coo:
            acts = acts.coalesce()
            idx, val = acts.indices(), acts.values()
            if idx.shape[0] != 2:
                raise ValueError("update: a sparse COO matrix must be 2-D [n, d_sae]")
            keep = val > 0
            rows, cols = idx[0][keep], idx[1][keep]
            n, d = acts.shape
        else:
            acts = torch.as_tensor(acts)
            d = acts.shape[-1]
            acts = acts.reshape(-1, d)
            n = acts.shape[0]
            rows, cols = (acts > 0).nonzero(as_tuple=True)
        tok = tok.reshape(-1)
        if tok.numel() != n:
            raise ValueError(f"update: {tok.numel()} token ids for {n} rows of activations")
        if d != self.d_sae:
            raise ValueError(f"update: activations have {d} features; this graph has d_sae={self.d_sae}")
        self.update_sparse(tok, rows, cols)

    def update_sparse(self, token_ids, rows, feature_ids) -> None:
        """Add a batch given as non-zeros: token_ids LongTensor[n] (every token occurrence of the
        batch, also those that fire nothing), rows LongTensor[nnz] (index into token_ids of each
        firing) and feature_ids LongTensor[nnz]. Torch tensors (any device) or numpy arrays."""
        o = self._ops
        int64 = np.int64 if o.name == "numpy" else o.torch.int64
        tok = o.asarray(token_ids, int64).reshape(-1)
        rows = o.asarray(rows, int64).reshape(-1)
        feats = o.asarray(feature_ids, int64).reshape(-1)
        if rows.shape[0] != feats.shape[0]:
            raise ValueError(f"update_sparse: {rows.shape[0]} rows for {feats.shape[0]} feature ids")
        if tok.shape[0]:
            lo, hi = int(tok.min()), int(tok.max())
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(f"token id {lo if lo < 0 else hi} out of range [0, {self.vocab_size})")
            self._token_counts += o.bincount(tok, self.vocab_size)
        if feats.shape[0]:
            lo, hi = int(feats.min()), int(feats.max())
            if lo < 0 or hi >= self.d_sae:
                raise ValueError(f"feature id {lo if lo < 0 else hi} out of range [0, {self.d_sae})")
            lo, hi = int(rows.min()), int(rows.max())
            if lo < 0 or hi >= tok.shape[0]:
                raise ValueError(f"row {lo if lo < 0 else hi} out of range [0, {tok.shape[0]})")
            n = int(feats.shape[0])
            self.n_firings += n
            if o.name == "numpy" and n <= self.buffer_keys:
                # keys go straight into a preallocated buffer (no per-batch arrays, no concatenation)
                if self._n_pending + n > self.buffer_keys:
                    self.flush()
                if self._buf is None:
                    self._buf = np.empty(self.buffer_keys, dtype=np.int64)
                keys = self._buf[self._n_pending : self._n_pending + n]
                np.take(tok, rows, out=keys)
            else:
                if o.name == "numpy":
                    self.flush()  # empty the buffer: this batch alone exceeds it
                keys = tok[rows]
                self._pending.append(keys)
            keys *= self.d_sae
            keys += feats
            self._n_pending += n
            if self._n_pending >= self.buffer_keys:
                self.flush()

    def flush(self) -> None:
        """Sort the buffered firings and merge them into the edge buckets."""
        if not self._n_pending:
            return
        o = self._ops
        keys = self._buf[: self._n_pending] if not self._pending else o.concat(self._pending)
        keys = o.sort_(keys)
        self._pending, self._n_pending = [], 0
        uniq, counts = o.run_lengths(keys)
        del keys
        span = self.tokens_per_bucket * self.d_sae
        nb = len(self._keys)
        bounds = o.searchsorted(uniq, o.arange(nb + 1) * span)
        bounds = [int(b) for b in (bounds.tolist() if hasattr(bounds, "tolist") else bounds)]
        for b in range(nb):
            lo, hi = bounds[b], bounds[b + 1]
            if lo == hi:
                continue
            seg = uniq[lo:hi]
            seg -= b * span
            self._merge(b, o.astype(seg, o.key_dtype), o.astype(counts[lo:hi], o.count_dtype))

    def _merge(self, b: int, new_keys, new_counts) -> None:
        """Merge sorted unique (new_keys, new_counts) into bucket b."""
        o = self._ops
        keys, counts = self._keys[b], self._counts[b]
        if keys.shape[0] == 0:
            self._keys[b], self._counts[b] = new_keys, new_counts
            return
        pos = o.searchsorted(keys, new_keys)
        at = pos.clip(max=keys.shape[0] - 1) if o.name == "numpy" else pos.clamp(max=keys.shape[0] - 1)
        hit = keys[at] == new_keys
        counts[pos[hit]] += new_counts[hit]  # positions are distinct: new_keys are unique
        miss = ~hit
        n_new = int(miss.sum())
        if n_new == 0:
            return
        new_keys, new_counts, pos = new_keys[miss], new_counts[miss], pos[miss]
        n = keys.shape[0] + n_new
        dest = pos + o.arange(n_new)  # where each new key lands in the merged array
        old = o.ones_bool(n)
        old[dest] = False
        for store, arr, new in ((self._keys, keys, new_keys), (self._counts, counts, new_counts)):
            out = o.empty(n, arr.dtype)
            out[dest] = new
            out[old] = arr
            store[b] = out
            del arr

    # ------------------------------------------------------------------------------------------
    # Results (numpy arrays)

    def _buckets(self):
        """(first token id of the bucket, local keys, counts) for every non-empty bucket."""
        self.flush()
        for b, (k, c) in enumerate(zip(self._keys, self._counts)):
            if k.shape[0]:
                yield b * self.tokens_per_bucket, k, c

    @property
    def n_edges(self) -> int:
        """Number of distinct (token, feature) edges."""
        return sum(int(k.shape[0]) for _, k, _ in self._buckets())

    @property
    def n_tokens(self) -> int:
        """Token occurrences seen."""
        return int(self.token_counts().sum())

    def token_counts(self) -> np.ndarray:
        """int64[vocab_size]: occurrences of each token in the data fed so far."""
        return self._ops.to_numpy(self._token_counts).copy()

    def ranking(self) -> np.ndarray:
        """Token ids by occurrences in the data fed so far, descending (ties: lower id first)."""
        return np.argsort(-self.token_counts(), kind="stable")

    def degree(self) -> np.ndarray:
        """int64[vocab_size]: number of distinct features each token activates (its degree)."""
        o, R, D = self._ops, self.tokens_per_bucket, self.d_sae
        deg = np.zeros(self.vocab_size, dtype=np.int64)
        for t0, k, _ in self._buckets():
            d = o.to_numpy(o.bincount(o.astype(k // D, np.int64 if o.name == "numpy" else o.torch.int64), R))
            n = min(R, self.vocab_size - t0)
            deg[t0 : t0 + n] = d[:n]
        return deg

    def feature_degree(self) -> np.ndarray:
        """int64[d_sae]: number of distinct tokens that activate each feature."""
        o, D = self._ops, self.d_sae
        out = np.zeros(D, dtype=np.int64)
        for _, k, _ in self._buckets():
            out += o.to_numpy(o.bincount(o.astype(k % D, np.int64 if o.name == "numpy" else o.torch.int64), D))
        return out

    def connected_features(self) -> int:
        """Number of features with at least one edge (fired by at least one token)."""
        return int(np.count_nonzero(self.feature_degree()))

    def feature_fire_counts(self, is_function) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature firing counts split by token type, counted per occurrence.

        is_function: bool[vocab_size] (numpy or torch), True for function tokens.
        Returns (function_counts int64[d_sae], content_counts int64[d_sae]): how many occurrences of
        function (resp. content) tokens fired each feature.
        """
        o, D = self._ops, self.d_sae
        mask = o.asarray(is_function).reshape(-1)
        if mask.shape[0] != self.vocab_size:
            raise ValueError(f"is_function: {mask.shape[0]} entries; expected vocab_size={self.vocab_size}")
        mask = mask.astype(bool) if o.name == "numpy" else mask.to(o.torch.bool)
        int64 = np.int64 if o.name == "numpy" else o.torch.int64
        fn = np.zeros(D, dtype=np.int64)
        ct = np.zeros(D, dtype=np.int64)
        for t0, k, c in self._buckets():
            k64 = o.astype(k, int64)
            isf = mask[k64 // D + t0]
            f = k64 % D
            fn += o.to_numpy(o.bincount(f[isf], D, weights=c[isf]))
            ct += o.to_numpy(o.bincount(f[~isf], D, weights=c[~isf]))
        return fn, ct

    def features_of(self, token_id: int) -> np.ndarray:
        """int64[degree]: sorted ids of the features token `token_id` activates."""
        t = int(token_id)
        if not 0 <= t < self.vocab_size:
            raise ValueError(f"token id {t} out of range [0, {self.vocab_size})")
        self.flush()
        o, R, D = self._ops, self.tokens_per_bucket, self.d_sae
        b = t // R
        k = self._keys[b]
        lo_key, hi_key = (t - b * R) * D, (t - b * R + 1) * D
        lo = int(o.searchsorted(k, o.asarray([lo_key], k.dtype))[0])
        hi = (
            k.shape[0]
            if hi_key >= _U32 and o.name == "numpy"
            else int(o.searchsorted(k, o.asarray([hi_key], k.dtype))[0])
        )
        return o.to_numpy(k[lo:hi]).astype(np.int64) - lo_key

    def coverage_topk(self, token_ranking, k: int, of: str = "all") -> np.ndarray:
        """float64[k]: share of features activated by at least one of the first 1..k tokens of
        `token_ranking` (token ids, most frequent first; e.g. `self.ranking()`).

        of="all": the share of d_sae (the paper's Table 1); of="connected": the share of the
        features that have at least one edge.
        """
        if of not in ("all", "connected"):
            raise ValueError(f"of: got {of!r}; expected 'all' or 'connected'")
        ranking = np.asarray(token_ranking, dtype=np.int64).reshape(-1)
        if k < 1 or k > ranking.size:
            raise ValueError(f"k: got {k}; expected 1 <= k <= {ranking.size} (the length of token_ranking)")
        covered = np.zeros(self.d_sae, dtype=bool)
        n_cov, out = 0, np.empty(k, dtype=np.float64)
        for i in range(k):
            f = self.features_of(int(ranking[i]))
            n_cov += int(np.count_nonzero(~covered[f]))
            covered[f] = True
            out[i] = n_cov
        denom = self.d_sae if of == "all" else max(self.connected_features(), 1)
        return out / denom

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edges sorted by (token, feature): (token_ids int64[E], feature_ids int64[E],
        counts int64[E] = occurrences of the token that fired the feature). Materializes 24 bytes
        per edge: for big graphs prefer the aggregate methods."""
        o, D = self._ops, self.d_sae
        toks, feats, cnts = [], [], []
        for t0, k, c in self._buckets():
            k = o.to_numpy(k).astype(np.int64)
            toks.append(k // D + t0)
            feats.append(k % D)
            cnts.append(o.to_numpy(c).astype(np.int64))
        if not toks:
            z = np.zeros(0, np.int64)
            return z, z.copy(), z.copy()
        return np.concatenate(toks), np.concatenate(feats), np.concatenate(cnts)

    # ------------------------------------------------------------------------------------------
    # Persistence

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the graph to `path` (.npz), atomically (a temporary file renamed into place).

        Arrays: edge_token int32[E], edge_feature int32[E], edge_count int32[E] (sorted by token,
        feature), token_counts int64[vocab_size], vocab_size, d_sae, n_firings, format, metadata
        (a JSON string). Edges are streamed bucket by bucket, so saving needs little extra memory.
        """
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        o, D = self._ops, self.d_sae
        buckets = list(self._buckets())
        E = sum(int(k.shape[0]) for _, k, _ in buckets)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:

                def put(name, arr):
                    arr = np.asarray(arr)
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, arr, allow_pickle=False)

                def put_stream(name, dtype, parts):
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array_header_2_0(
                            f,
                            {
                                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                "fortran_order": False,
                                "shape": (E,),
                            },
                        )
                        for p in parts:
                            f.write(np.ascontiguousarray(p, dtype=dtype).tobytes())

                put_stream("edge_token", np.int32, (o.to_numpy(k) // D + t0 for t0, k, _ in buckets))
                put_stream("edge_feature", np.int32, (o.to_numpy(k) % D for _, k, _ in buckets))
                put_stream("edge_count", np.int32, (o.to_numpy(c) for _, _, c in buckets))
                put("token_counts", self.token_counts())
                put("vocab_size", np.int64(self.vocab_size))
                put("d_sae", np.int64(self.d_sae))
                put("n_firings", np.int64(self.n_firings))
                put("format", np.str_(FORMAT))
                put("metadata", np.str_(json.dumps(metadata or {}, default=str)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **kwargs) -> "TokenFeatureGraph":
        """Read a graph written by `save` (kwargs go to the constructor)."""
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise ValueError(f"{path}: format {str(z['format'])!r}; expected {FORMAT!r}")
            g = cls(int(z["vocab_size"]), int(z["d_sae"]), device, **kwargs)
            tok, feat, cnt = z["edge_token"], z["edge_feature"], z["edge_count"]
            g._token_counts += g._ops.asarray(z["token_counts"], g._token_counts.dtype)
            g.n_firings = int(z["n_firings"])
            g.metadata = __import__("json").loads(str(z["metadata"]))
        o, R, D = g._ops, g.tokens_per_bucket, g.d_sae
        bounds = np.searchsorted(tok, np.arange(len(g._keys) + 1, dtype=np.int64) * R)
        for b in range(len(g._keys)):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            if lo == hi:
                continue
            local = (tok[lo:hi].astype(np.int64) - b * R) * D + feat[lo:hi]
            if local.size > 1 and not (np.diff(local) > 0).all():
                raise ValueError(f"{path}: edges are not sorted by (token, feature) or repeat")
            g._keys[b] = o.astype(o.asarray(local), o.key_dtype)
            g._counts[b] = o.astype(o.asarray(cnt[lo:hi]), o.count_dtype)
        return g

    def __repr__(self) -> str:
        return (
            f"TokenFeatureGraph(vocab_size={self.vocab_size}, d_sae={self.d_sae}, backend={self._ops.name}, "
            f"firings={self.n_firings}, pending={self._n_pending})"
        )
