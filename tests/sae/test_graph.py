"""The token-feature graph against a brute-force dict of sets, on random sparse codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from functok.sae.graph import TokenFeatureGraph

BACKENDS = ["numpy", "torch"]


def random_batches(seed, vocab, d_sae, n_batches=12, n=37, p_fire=0.08):
    """Batches of (token ids [n], dense activations [n, d_sae]) with some all-zero rows; n=None:
    sizes from 1 to 60 tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    sizes = [n] * n_batches if n else torch.randint(1, 61, (n_batches,), generator=g).tolist()
    for n in sizes:
        # skewed token ids: low ids are frequent
        tok = (torch.rand(n, generator=g) ** 3 * vocab).long().clamp(max=vocab - 1)
        acts = torch.rand(n, d_sae, generator=g)
        acts = torch.where(torch.rand(n, d_sae, generator=g) < p_fire, acts, torch.zeros(()))
        acts[torch.rand(n, generator=g) < 0.1] = 0  # tokens that fire nothing still count as occurrences
        acts[0, 0] = -1.0  # a negative value is not a firing
        out.append((tok, acts))
    return out


def brute_force(batches, vocab, d_sae, is_function):
    edges: dict[int, set] = {}
    occ = np.zeros(vocab, dtype=np.int64)
    fn = np.zeros(d_sae, dtype=np.int64)
    ct = np.zeros(d_sae, dtype=np.int64)
    for tok, acts in batches:
        for t, row in zip(tok.tolist(), acts.tolist()):
            occ[t] += 1
            for f, v in enumerate(row):
                if v > 0:
                    edges.setdefault(t, set()).add(f)
                    (fn if is_function[t] else ct)[f] += 1
    return edges, occ, fn, ct


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed, n", [(0, 37), (1, 37), (2, None)])
def test_graph_matches_brute_force(backend, seed, n):
    vocab, d_sae = 53, 211
    batches = random_batches(seed, vocab, d_sae, n=n, n_batches=25)
    is_function = np.random.default_rng(seed).random(vocab) < 0.3
    edges, occ, fn, ct = brute_force(batches, vocab, d_sae, is_function)
    # a tiny buffer and few tokens per bucket: many flushes, merges into non-empty buckets
    g = TokenFeatureGraph(vocab, d_sae, buffer_keys=300, n_buckets=5, backend=backend)
    for tok, acts in batches:
        g.update(tok, acts)

    assert g.token_counts().tolist() == occ.tolist()
    assert g.n_tokens == occ.sum()
    assert g.degree().tolist() == [len(edges.get(t, ())) for t in range(vocab)]
    assert g.n_edges == sum(map(len, edges.values()))
    connected = set().union(*edges.values())
    assert g.connected_features() == len(connected)
    got_fn, got_ct = g.feature_fire_counts(is_function)
    assert got_fn.tolist() == fn.tolist() and got_ct.tolist() == ct.tolist()
    assert g.n_firings == fn.sum() + ct.sum()
    for t in range(vocab):
        assert g.features_of(t).tolist() == sorted(edges.get(t, ()))

    ranking = sorted(range(vocab), key=lambda t: (-occ[t], t))
    assert g.ranking().tolist() == ranking
    covered, want = set(), []
    for t in ranking[:12]:
        covered |= edges.get(t, set())
        want.append(len(covered))
    np.testing.assert_allclose(g.coverage_topk(ranking, 12), np.array(want) / d_sae)
    np.testing.assert_allclose(g.coverage_topk(ranking, 12, of="connected"), np.array(want) / len(connected))

    t_ids, f_ids, counts = g.edges()
    pairs = sorted((t, f) for t, fs in edges.items() for f in fs)
    assert list(zip(t_ids.tolist(), f_ids.tolist())) == pairs
    # an edge's count: occurrences of the token that fired the feature
    tok_all = torch.cat([b[0] for b in batches])
    acts_all = torch.cat([b[1] for b in batches])
    for i in range(0, len(pairs), 17):
        t, f = pairs[i]
        assert counts[i] == int(((tok_all == t) & (acts_all[:, f] > 0)).sum())


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("backend", BACKENDS)
def test_input_layouts_agree(backend):
    vocab, d_sae = 20, 64
    batches = random_batches(3, vocab, d_sae, n_batches=3, n=24, p_fire=0.2)
    graphs = {
        k: TokenFeatureGraph(vocab, d_sae, backend=backend, buffer_keys=50)
        for k in ("dense", "batched", "coo", "csr", "sparse")
    }
    for tok, acts in batches:
        graphs["dense"].update(tok, acts)
        graphs["batched"].update(tok.reshape(4, 6), acts.reshape(4, 6, d_sae))
        graphs["coo"].update(tok, acts.to_sparse_coo())
        graphs["csr"].update(tok, acts.to_sparse_csr())
        rows, feats = (acts > 0).nonzero(as_tuple=True)
        graphs["sparse"].update_sparse(tok.numpy(), rows.numpy(), feats.numpy())
    ref = graphs.pop("dense")
    for name, g in graphs.items():
        assert g.degree().tolist() == ref.degree().tolist(), name
        assert g.token_counts().tolist() == ref.token_counts().tolist(), name
        assert [a.tolist() for a in g.edges()] == [a.tolist() for a in ref.edges()], name


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(tmp_path, backend):
    vocab, d_sae = 31, 97
    batches = random_batches(5, vocab, d_sae, n_batches=4)
    g = TokenFeatureGraph(vocab, d_sae, backend=backend, buffer_keys=100, n_buckets=4)
    for tok, acts in batches:
        g.update(tok, acts)
    path = g.save(tmp_path / "sub" / "graph.npz", metadata={"sae": "x/y", "layer": 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["graph.npz"]  # no temporary file left
    with np.load(path) as z:  # readable by any program with numpy
        assert z["edge_token"].size == g.n_edges and int(z["d_sae"]) == d_sae
    for other in BACKENDS:
        h = TokenFeatureGraph.load(path, backend=other, n_buckets=3)  # a different bucketing works too
        assert h.metadata == {"sae": "x/y", "layer": 3}
        assert [a.tolist() for a in h.edges()] == [a.tolist() for a in g.edges()]
        assert h.token_counts().tolist() == g.token_counts().tolist()
        assert h.n_firings == g.n_firings
        # loading and going on accumulating gives the same graph as one pass
        tok, acts = random_batches(6, vocab, d_sae, n_batches=1)[0]
        h.update(tok, acts)
        ref = TokenFeatureGraph(vocab, d_sae, backend=backend)
        for t, a in batches + [(tok, acts)]:
            ref.update(t, a)
        assert [a.tolist() for a in h.edges()] == [a.tolist() for a in ref.edges()]


def test_32_bit_bucket_keys_at_their_limit():
    # 4 tokens per bucket x 2^30 features: bucket-local keys reach 2^32 - 1
    d_sae = 2**30
    g = TokenFeatureGraph(8, d_sae, n_buckets=2)
    assert g.tokens_per_bucket * d_sae == 2**32
    tok = np.array([3, 3, 4, 7, 0])
    rows = np.array([0, 1, 2, 3, 3, 4])
    feats = np.array([d_sae - 1, 0, d_sae - 1, 5, d_sae - 2, 1])
    g.update_sparse(tok, rows, feats)
    assert g.features_of(3).tolist() == [0, d_sae - 1]
    assert g.features_of(7).tolist() == [5, d_sae - 2]
    assert g.degree().tolist() == [1, 0, 0, 2, 1, 0, 0, 2]


def test_bad_input_is_refused():
    g = TokenFeatureGraph(10, 16)
    with pytest.raises(ValueError, match="token id 10"):
        g.update_sparse([10], [0], [1])
    with pytest.raises(ValueError, match="feature id 16"):
        g.update_sparse([1], [0], [16])
    with pytest.raises(ValueError, match="d_sae=16"):
        g.update(torch.tensor([1]), torch.ones(1, 8))
    with pytest.raises(ValueError, match="2 token ids for 3 rows"):
        g.update(torch.tensor([1, 2]), torch.ones(3, 16))
    with pytest.raises(ValueError, match="k: got 11"):
        g.coverage_topk(np.arange(10), 11)
