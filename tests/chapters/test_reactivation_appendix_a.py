"""Chapter 5's Appendix A (steering through the chat template): the chat prompt's positions, the binary
search for the smallest steering top-k set against brute force, the position controls, the claims' rules,
and the real SmolLM2 chat template (its final token is the "\\n" that ends the assistant header)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from functok.book.site import split_claim_id
from functok.chapters.reactivation import appendix_a as A
from functok.chapters.reactivation.claims import chat_claims
from functok.chapters.reactivation.config import ReactivationConfig
from functok.chapters.reactivation.setup import Setup
from functok.core.config import ParamError, defaults

D = 12  # d_model = d_sae of the fake SAE below
FUNCTION_WORDS = ("<user>", "<assistant>", "\n", "is", "a", "the", "?")


class Tok:
    """A word-level tokenizer with a chat template: <user> message <assistant> \\n."""

    chat_template = "<user>{message}<assistant>\n"
    eos_token_id = 0

    def __init__(self):
        self.vocab = {"<eos>": 0, **{w: i + 1 for i, w in enumerate(FUNCTION_WORDS)}}

    def _id(self, w: str) -> int:
        return self.vocab.setdefault(w, len(self.vocab))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self._id(w) for w in text.replace("?", " ?").split()]

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        (m,) = messages
        return [self._id("<user>"), *self.encode(m["content"]), self._id("<assistant>"), self._id("\n")]

    def decode(self, ids, skip_special_tokens=True) -> str:
        inv = {i: w for w, i in self.vocab.items()}
        return " ".join(inv[i] for i in ids)


class Sae:
    """ReLU encoder on the identity: feature i is coordinate i, its decoder row the unit vector e_i."""

    W_enc = torch.eye(D)
    W_dec = torch.eye(D)

    def encode(self, x):
        return torch.relu(x)


def fake_setup() -> Setup:
    tok = Tok()
    model = type("Model", (), {"tokenizer": tok})()
    for w in ("Where", "Mount", "Fuji", "Name", "river", "famous", "Russia", "Japan"):
        tok._id(w)
    is_function = np.zeros(64, dtype=bool)
    is_function[[tok.vocab[w] for w in FUNCTION_WORDS]] = True
    return Setup(model, "", 0, "hook", Sae(), "", is_function, "", None, None, {}, None)


def cfg(**kw):
    return ReactivationConfig(
        **defaults(ReactivationConfig)
        | {
            "chat_template": True,
            "test_prompts": ["Where is Mount Fuji?", "Name a famous river", "Where is the river?"],
            "traits": {"Russia": {"prompt": "Name a famous country", "pattern": "Russia"}},
            "alphas": [0, 0.5, 1],
        }
        | kw
    )


def steered_model(monkeypatch, v: np.ndarray, need: float, at_content: bool = False, layer: int = 0):
    """The model answers 'Russia' when the edit's positive coordinates sum to at least `need` and it touches the
    prompt's last position (with at_content: or its last content position) at the chapter's layer or at
    `layer`; otherwise 'Japan'. `calls`: the edited positions of every answer."""
    monkeypatch.setattr(A, "last_activation", lambda s, ids, hook=None: torch.tensor(v, dtype=torch.float32))
    calls = []

    def answer(s, ids, n_new, vector, positions, at_layer):
        calls.append(positions)
        if vector is None or not positions or at_layer not in (None, layer):
            return "Japan"
        accept = {len(ids) - 1}
        if at_content:
            accept |= {p.last_content for p in A.prepare(s, [s.model.tokenizer.decode(ids[1:-2])]) if p.ids == ids}
        return "Russia" if accept & set(positions) and float(vector.clamp(min=0).sum()) >= need - 1e-6 else "Japan"

    def generate(s, prompts, n_new, vector=None, positions=None, layer=None):
        return [
            answer(s, ids, n_new, vector, pos, layer) for ids, pos in zip(prompts, positions or [None] * len(prompts))
        ]

    monkeypatch.setattr(A, "generate", generate)
    return calls


def test_prepare_finds_the_last_content_token_of_the_users_message():
    s = fake_setup()
    tok = s.model.tokenizer
    (p,) = A.prepare(s, ["Where is Mount Fuji?"])
    assert tok.decode(p.ids) == "<user> Where is Mount Fuji ? <assistant> \n"
    assert tok.decode([p.ids[p.last_content]]) == "Fuji"  # "?" is a function token
    (q,) = A.prepare(s, ["is a the ?"])
    assert q.last_content == -1  # no content token in the message


@pytest.mark.parametrize("seed", range(6))
def test_topk_search_finds_the_smallest_steering_set(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    v = rng.exponential(1.0, D) * (rng.random(D) < 0.8)
    v[-1] = -1.0  # a negative coordinate: no active feature
    active = int((v > 0).sum())
    m = int(rng.integers(1, active + 1))
    order = np.sort(v[v > 0])[::-1]
    need = float(order[:m].sum())
    steered_model(monkeypatch, v, need)
    s, c = fake_setup(), cfg(trait_keep=1.0)
    row = A.appendix_a(s, c, progress=False)["traits"]["Russia"]
    # brute force: the smallest k whose top-k coordinates sum to at least `need`
    want = min(k for k in range(1, active + 1) if order[:k].sum() >= need - 1e-6)
    assert row["active_features"] == active
    assert row["k"] == want
    assert row["features"] == [int(i) for i in np.argsort(-v, kind="stable")[:want]]
    assert row["base"]["rate"] == 0 and row["raw"]["rate"] == 1 and row["topk_last"]["rate"] == 1
    assert row["topk_content"]["rate"] == 0  # the edit only works at the last position here
    assert row["topk_every"]["rate"] == 1  # every position includes the last
    assert all((r["rate"] == 1) == (r["k"] >= want) for r in row["search"])
    assert row["alphas"]["1"] == 1 and row["alphas"]["0.5"] == (1 if 0.5 * order[:want].sum() >= need else 0)
    assert "0" not in row["alphas"]


def test_the_content_control_edits_the_last_content_token(monkeypatch):
    v = np.zeros(D)
    v[[2, 5]] = [3.0, 1.0]
    steered_model(monkeypatch, v, need=3.0, at_content=True)
    c = cfg(test_prompts=["Where is Mount Fuji?", "Name a famous river", "is a the?"], trait_keep=1.0)
    row = A.appendix_a(fake_setup(), c, progress=False)["traits"]["Russia"]
    assert row["k"] == 1 and row["features"] == [2]
    # the third prompt has no content token: the control cannot edit it
    assert row["topk_last"]["rate"] == 1 and row["topk_content"]["rate"] == pytest.approx(2 / 3)


def test_the_layer_scan_measures_the_raw_activation_at_each_layer(monkeypatch):
    v = np.ones(D)
    steered_model(monkeypatch, v, need=1.0, layer=2)
    row = A.appendix_a(fake_setup(), cfg(trait_layers=[1, 2, 3]), progress=False)["traits"]["Russia"]
    assert row["layers"] == {"1": 0.0, "2": 1.0, "3": 0.0}
    assert row["raw"]["rate"] == 1.0  # the chapter's own layer


def test_a_trait_the_raw_activation_cannot_produce_is_reported_not_searched(monkeypatch):
    v = np.ones(D)
    calls = steered_model(monkeypatch, v, need=1e9)
    out = A.appendix_a(fake_setup(), cfg(), progress=False)
    row = out["traits"]["Russia"]
    assert row["k"] is None and row["search"] == [] and row["raw"]["rate"] == 0
    assert len(calls) == 1 + 2 * 3  # trait answer, unsteered and raw over three prompts: no search
    assert out["final_token"] == ["\n"] and out["final_is_function"]
    (a, b) = chat_claims(out, cfg())
    assert a["verdict"] == b["verdict"] == "inconclusive" and "no SAE features can be searched" in a["note"]


def _trait(last, content, every, base, k=3):
    n = 12

    def r(x):
        return {"rate": x / n, "answers": []}

    return {
        "prompt": "",
        "pattern": "Russia",
        "base": r(base),
        "raw": r(max(last, base + 1)),
        "active_features": 20,
        "k": k,
        "topk_last": r(last),
        "topk_content": r(content),
        "topk_every": r(every),
    }


@pytest.mark.parametrize(
    "last, content, base, bar, want_steer, want_position",
    [
        (12, 0, 0, [], "holds", "holds"),  # steers everything, only at the function token
        (12, 12, 0, [], "holds", "fails"),  # the content-token edit steers as well
        (5, 0, 0, [], "fails", "holds"),  # under half of the prompts
        (7, 6, 4, [], "fails", "inconclusive"),  # over half, but not above unsteered (Fisher)
        (12, 0, 0, ["L0 300 > 100"], "inconclusive", "inconclusive"),  # SAE below the quality bar
    ],
)
def test_chat_claims_follow_their_rules(last, content, base, bar, want_steer, want_position):
    c = cfg(test_prompts=[f"q{i}" for i in range(12)])
    app = {"traits": {"Russia": _trait(last, content, last, base)}}
    steer, position = chat_claims(app, c, bar)
    assert steer["id"] == "chat_steering:Russia" and position["id"] == "chat_steering_position:Russia"
    assert split_claim_id(steer["id"], "smollm2") == (steer["id"], "smollm2")  # a trait is no model column
    assert (steer["verdict"], position["verdict"]) == (want_steer, want_position)
    if bar:
        assert "quality bar" in steer["note"] and "quality bar" in position["note"]


def test_a_tokenizer_without_chat_template_is_refused():
    s = fake_setup()
    s.model.tokenizer.chat_template = None
    with pytest.raises(ParamError, match="^chat_template: "):
        A.chat_ids(s.model.tokenizer, "Where is Mount Fuji?")


def test_smollm2_chat_prompt_ends_in_the_assistant_headers_newline():
    """The real instruct model's template (its GGUF's tokenizer): the edited position is the final "\n"."""
    from transformers import AutoTokenizer

    from functok.world import wheel_models as wm

    gguf = wm.gguf_file("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ids = A.chat_ids(tok, "Where is Mount Fuji?")
    assert tok.decode(ids[-1:]) == "\n"
    assert tok.decode(ids).endswith("Where is Mount Fuji?<|im_end|>\n<|im_start|>assistant\n")
    s = fake_setup()
    s.model.tokenizer = tok
    s.is_function = np.zeros(len(tok), dtype=bool)
    s.is_function[tok.encode("?", add_special_tokens=False)] = True
    (p,) = A.prepare(s, ["Where is Mount Fuji?"])
    piece = tok.decode([p.ids[p.last_content]]).strip()
    assert piece and "Fuji".endswith(piece) and p.last_content < len(p.ids) - 1


def test_appendix_a_needs_its_final_token_to_be_a_function_token():
    """A template ending in a token outside the model's function tokens: a failed precondition on the page, and
    every Appendix A claim inconclusive with the token named; the same results with a function token decide."""
    from functok.chapters.reactivation.claims import make_claims, make_preconditions

    c = cfg(test_prompts=[f"q{i}" for i in range(12)], steer_prompts=["x"])
    app = {"traits": {"Russia": _trait(12, 0, 12, 0)}, "final_token": [":"], "final_is_function": False}
    res = {"concepts": {}, "alphas": [0, 4], "appendix_a": app}
    chat = [x for x in make_claims(res, c) if x["id"].startswith("chat_")]
    assert chat and all(x["verdict"] == "inconclusive" and "final token ':'" in x["note"] for x in chat)
    pre = {p["id"]: p for p in make_preconditions(res, c)}
    assert pre["final_token_is_function"]["met"] is False and pre["final_token_is_function"]["value"] == "':'"
    app["final_is_function"] = True
    assert {x["verdict"] for x in make_claims(res, c) if x["id"].startswith("chat_")} == {"holds"}
