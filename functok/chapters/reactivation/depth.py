"""Chapter 5's depth scan: the concept features found and measured as at the chapter's own layer (`scan`), at
further layers (`scan_layers`). On the real models the chapter's layer is the paper's relative depth (0.62) and
the further layers are chapter 2's depths, so one table shows where along the depth a feature stands for each
concept. Each further layer reads chapter 2's SAE there and, when chapter 2's store over the scanned windows
holds the layer, the store (no model runs). Each layer's numbers and feature cards are cached on their own, so
changing scan_layers leaves the chapter's main cache alone.

    scans = depth_scan(cfg, s)   # {"9": {"layer": 9, "relative_depth": 0.5, "sae_quality": {...},
                                 #        "concepts": {" Russia": {"feature": 12, "precision": ...}}, ...}}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from functok.chapters.reactivation import scan
from functok.chapters.reactivation.cards import card_data
from functok.chapters.reactivation.setup import Setup, layer_setup
from functok.core.cache import cached_dir, write_json_atomic
from functok.sae.activation_store import store_info

DEPTH_VERSION = 1  # bump when a change here changes what a layer's scan records


def depth_scan(cfg, s: Setup, progress: bool = True) -> dict[str, dict]:
    """{layer: its scan} for each of cfg.scan_layers other than the chapter's own layer (see the module)."""
    return {str(L): _cached_layer(cfg, s, L, progress) for L in cfg.scan_layers if L != s.layer}


def _cached_layer(cfg, s: Setup, layer: int, progress: bool) -> dict:
    sub = layer_setup(cfg, s, layer, progress)
    key = {
        "version": DEPTH_VERSION,
        "checkpoint": scan.ident(s.checkpoint),
        "sae": scan.ident(sub.sae_source),
        "windows": scan.ident(s.windows_path),
        "n_windows": int(len(s.windows)),
        "concepts": list(cfg.concepts),
        "episode_window": cfg.episode_window,
        **({"activations": f"store:{store_info(sub.store)['dtype']}"} if sub.store is not None else {}),
    }
    box: dict = {}

    def build(tmp: Path) -> None:
        box["out"] = scan_layer(cfg, sub, progress)
        write_json_atomic(tmp / "layer.json", box["out"])

    return box.get("out") or json.loads((cached_dir("reactivation_depth", key, build) / "layer.json").read_text())


def scan_layer(cfg, s: Setup, progress: bool = True) -> dict:
    """One layer's scan: per concept the feature selected on the first half of the documents and measured on the
    second (scan.feature_entry), the SAE's quality, and the selected features' cards."""
    t0 = time.perf_counter()
    sel = scan.select_features(s, cfg.batch_size, progress, cfg.episode_window)
    for k in ("_split", "_typical", "_resid_norm"):
        sel.pop(k)
    l0, alive, single = sel.pop("_l0"), sel.pop("_alive"), sel.pop("_single_token")
    features = {c: int(r["selected"]) for c, r in sel.items() if r["selected"] is not None}
    concepts = {c: scan.feature_entry(s, c, f, sel[c]) for c, f in features.items()}
    cards = card_data(s, features, concepts, lambda: scan.encode_windows(s, cfg.batch_size, progress=False))
    return {
        "layer": s.layer,
        "hook_name": s.hook,
        "relative_depth": s.layer / int(s.model.cfg.n_layers),
        "sae": scan.ident(s.sae_source),
        "d_sae": int(s.sae.cfg.d_sae),
        "from_store": s.store is not None,
        "sae_quality": scan.sae_quality(cfg, s, l0, alive, single),
        "concepts": concepts,
        "feature_cards": cards,
        "seconds": round(time.perf_counter() - t0, 1),  # the scan, the SAE's quality and the cards
    }
