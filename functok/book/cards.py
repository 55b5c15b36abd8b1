"""The site's feature cards: one page per model (`book/cards/<run>.md`) with a card for every feature chapter 5
names on it, from its results file (`results.feature_cards`, computed by functok.chapters.reactivation.cards):
top activating contexts with the token highlighted, the activation-density histogram, the logit lens and the
feature's precision. Each card has the anchor `#feature-<id>` (`#layer-<L>-feature-<id>` for the further layers
of chapter 5's depth scan); chapter 5's page links them (functok.chapters.reactivation.cards.card_href)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from functok.chapters.reactivation.cards import CARDS, card_anchor


def card_runs(results_dir: Path) -> list[tuple[str, Path]]:
    """(run label, chapter 5's results file) for every run with feature cards: 'embedded', then model runs."""
    out = []
    for path in [results_dir / "reactivation.json", *sorted(results_dir.glob("*/reactivation.json"))]:
        if path.exists() and json.loads(path.read_text())["results"].get("feature_cards"):
            out.append(("embedded" if path.parent == results_dir else path.parent.name, path))
    return out


def write_cards(results_dir: Path, book_dir: Path) -> list[str]:
    """Write every card page (and its histograms) under book_dir/cards/; returns their toc entries."""
    folder = Path(book_dir) / CARDS
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for label, path in card_runs(results_dir):
        doc = json.loads(path.read_text())
        lines = [f"# Feature cards: {label}", "", _intro(doc), ""]
        for named in _by_feature(doc["results"]["feature_cards"]):
            png = f"{label}-{named[0][1]['feature']}.png"
            _histogram(named[0][1], folder / png)
            lines += _card(named, png)
        for L, scan in (doc["results"].get("depth_scan") or {}).items():  # the further layers chapter 5 scanned
            for named in _by_feature(scan["feature_cards"]):
                png = f"{label}-L{L}-{named[0][1]['feature']}.png"
                _histogram(named[0][1], folder / png)
                lines += _card(named, png, layer=int(L))
        (folder / f"{label}.md").write_text("\n".join(lines) + "\n")
        entries.append(f"book/{CARDS}/{label}")
    return entries


def _intro(doc: dict) -> str:
    r = doc["results"]
    return (
        f"The features chapter 5 names on `{r['model']}`, layer {r['layer']} (`{r['hook_name']}`), SAE `{r['sae']}` "
        f"(d_sae {r['d_sae']:,}), read on the {r['n_windows']:,} windows it scanned. Each card: the positions where "
        "the feature fires most (the token highlighted), the histogram of its activation where it fires, the tokens "
        "its decoder row promotes through the unembedding (logit lens, without the final norm), and its episode "
        "precision on the held-out half of the documents."
        + (
            f" Then the features chapter 5's depth scan found at layers {', '.join(r['depth_scan'])}, each read the "
            "same way with that layer's SAE."
            if r.get("depth_scan")
            else ""
        )
    )


def _by_feature(cards: dict) -> list[list[tuple[str, dict]]]:
    """The cards {concept: card} grouped by feature, in order: two concepts may select the same feature, which
    gets one card (one anchor) with each concept's precision."""
    groups: dict[int, list] = {}
    for concept, card in cards.items():
        groups.setdefault(card["feature"], []).append((concept, card))
    return list(groups.values())


def _precision_line(concept: str, card: dict) -> str:
    lo, hi = card.get("precision_interval") or (float("nan"), float("nan"))
    prec = card.get("precision")
    if prec is None or prec != prec:
        return f"{concept.strip()!r}: no precision (never on the concept)."
    n = card.get("n_occurrences")
    return f"{concept.strip()!r}: episode precision {prec:.3f} [95% {lo:.3f}, {hi:.3f}] over {n} occurrences."


def _card(named: list[tuple[str, dict]], png: str, layer: int | None = None) -> list[str]:
    """A feature's card for the concepts that named it ([(concept, card)], the same feature): `layer` set for a
    depth-scan layer's card (its own anchor and heading)."""
    card = named[0][1]
    f = card["feature"]
    names = ", ".join(repr(c.strip()) for c, _ in named)
    rows = "".join(
        f"<tr><td>{c['activation']:.3g}</td><td>{html.escape(c['before'])}<mark><b>{html.escape(c['token'])}</b>"
        f"</mark>{html.escape(c['after'])}</td></tr>"
        for c in card["contexts"]
    )
    lens = ", ".join(f"<code>{html.escape(repr(t['token']))}</code> {t['logit']:.2f}" for t in card["logit_lens"])
    return [
        f"({card_anchor(f, layer)})=",
        f"## {names}: feature {f}" if layer is None else f"## {names}: layer {layer}, feature {f}",
        "",
        *(f"- {_precision_line(c, k)}" for c, k in named),
        "",
        f"Fires at {card['density']:.3%} of {card['n_positions']:,} positions.",
        "",
        f"![Activation density of feature {f}]({png})",
        "",
        '<table class="functok-card-contexts"><thead><tr><th>activation</th><th>context</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>",
        "",
        f"<p>Logit lens (top tokens): {lens}</p>",
        "",
    ]


def _histogram(card: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, counts = card["histogram"]["log10_edges"], card["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge", color="#4c72b0")
    ax.set(
        xlabel="log10 activation (where it fires)",
        ylabel="positions",
        title=f"layer {card['layer']}, feature {card['feature']}",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
