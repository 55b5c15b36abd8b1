"""functok.sae.generation: batched greedy generation with a KV cache on the plain transformers model gives
the tokens of an uncached loop through the TransformerLens bridge with the same edit at the same hook, for
tiny random Llama and Gemma-3 models (left padding, several edited positions, unedited rows, EOS)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_causal_lm

from functok.sae.generation import generate, load_generator
from functok.sae.models import hook_name, load_model


def _uncached(bridge, ids, n_new, edit=None, layer=0, eos=None):
    """The reference: every new token re-runs the whole sequence through the bridge, the edit added at the
    hook in every forward."""
    positions, vector = edit if edit else ([], None)

    def add(act, hook):
        act[:, positions, :] += vector
        return act

    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n_new):
            logits = bridge.run_with_hooks(x, fwd_hooks=[(hook_name(layer), add)] if edit else [])
            x = torch.cat([x, logits[0, -1].argmax().view(1, 1)], 1)
            if eos is not None and int(x[0, -1]) == eos:
                break
    return x[0, len(ids) :].tolist()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_batched_cached_generation_matches_the_uncached_bridge(tmp_path, arch):
    folder = tiny_causal_lm(tmp_path, arch)
    bridge, model = load_model(folder), load_generator(folder)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(100, 5000, (n,), generator=g).tolist() for n in (7, 3, 11, 7)]
    vec = [torch.randn(32, generator=g) * 8 for _ in prompts]
    edits = [([6], vec[0]), None, ([2, 10], vec[2]), ([0, 3, 6], vec[3])]
    layer, n_new = 1, 6
    want = [_uncached(bridge, p, n_new, e, layer) for p, e in zip(prompts, edits)]
    got, first = generate(model, prompts, n_new, edits=edits, layer=layer, max_rows=3)  # two batches
    assert got == want
    assert want[0] != _uncached(bridge, prompts[0], n_new)  # the edit changes the answer
    with torch.no_grad():
        plain = torch.log_softmax(bridge(torch.tensor([prompts[1]]))[0, -1].float(), -1)
    assert torch.allclose(first[1], plain, atol=1e-4)
    # EOS: a row stops after the token chosen as EOS, as the uncached loop does
    eos = want[2][2]
    cut, _ = generate(model, prompts, n_new, edits=edits, layer=layer, eos_token_id=eos)
    assert cut == [_uncached(bridge, p, n_new, e, layer, eos) for p, e in zip(prompts, edits)]
    assert cut[2][-1] == eos and len(cut[2]) <= 3


def test_an_edit_needs_a_layer(tmp_path):
    model = load_generator(tiny_causal_lm(tmp_path, "llama"))
    with pytest.raises(ValueError, match="layer"):
        generate(model, [[1, 2, 3]], 2, edits=[([2], torch.ones(32))])
