"""The whole book on the smoke preset: every chapter runs, the site builds with warnings as errors,
and headless Chromium opens every page (screenshots saved under test-artifacts/screens/)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from functok.chapters import registry
from functok.core import config

ARTIFACTS = config.ROOT / "test-artifacts"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    from functok.book.site import build_book

    root = tmp_path_factory.mktemp("book")
    site = build_book("smoke", root=root)
    return root, site


@pytest.mark.slow
def test_every_chapter_writes_results_with_claims(smoke_book):
    root, _ = smoke_book
    for chapter in registry.chapters():
        doc = json.loads((root / "book" / "chapters" / f"{chapter}.json").read_text())
        assert doc["chapter"] == chapter
        assert doc["params"]["preset"] == "smoke"
        assert doc["claims"], f"{chapter} makes no claims"
        assert {c["verdict"] for c in doc["claims"]} <= {"holds", "fails", "inconclusive", "fragile"}
        assert isinstance(doc["preconditions"], list)  # shown on the page, never among the claims
        assert not {p["id"] for p in doc["preconditions"]} & {c["id"] for c in doc["claims"]}
        for key in ("tokens",):
            tokens = doc["provenance"]["data"][key]
            assert (config.ROOT / tokens).exists() or Path(tokens).exists(), f"{chapter}: {key} not on disk"
        nb = json.loads((root / "book" / "chapters" / f"{chapter}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors


@pytest.mark.slow
def test_the_robustness_sweep_ran_on_ray_and_every_run_finished(smoke_book):
    root, _ = smoke_book
    index = json.loads((root / "book" / "robustness" / "function_tokens" / "index.json").read_text())
    assert index["runs"] and all(r["status"] == "finished" for r in index["runs"])
    assert "[robustness](robustness.md)" in (root / "book" / "scorecard.md").read_text()


@pytest.mark.slow
def test_intro_shows_the_worlds_composition(smoke_book):
    """The intro page's composition table is chapter 1's `results.world`, row for row."""
    root, site = smoke_book
    world = json.loads((root / "book" / "chapters" / "function_tokens.json").read_text())["results"]["world"]
    html = (site / "book" / "intro.html").read_text()
    assert {r["split"] for r in world["composition"]} == {"train", "heldout"}
    for r in world["composition"]:
        assert f"{r['documents']:,}" in html and f"{r['tokens']:,}" in html
    for m in world["models"]:
        assert f"{m['parameters']:,}" in html
    assert f"{world['largest_source']['share']:.1%}" in html


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_every_page_renders_in_a_browser(smoke_book):
    from playwright.sync_api import sync_playwright

    root, site = smoke_book
    pages = {
        "index": site / "index.html",
        "intro": site / "book" / "intro.html",
        "scorecard": site / "book" / "scorecard.html",
        "robustness": site / "book" / "robustness.html",
    }
    pages.update({c: site / "book" / "chapters" / f"{c}.html" for c in registry.chapters()})
    shots = ARTIFACTS / "screens"
    shots.mkdir(parents=True, exist_ok=True)
    external: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on(
            "request", lambda r: external.append(r.url) if not r.url.startswith(("file:", "data:", "about:")) else None
        )
        for name, path in pages.items():
            assert path.exists(), f"page {name} missing from the site"
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
            )
            assert not broken, f"{name}: images that did not load: {broken}"
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            if name in registry.chapters():
                assert page.locator("img").count() > 0, f"{name}: no figures"
                assert "functok run " + name in page.inner_text("body"), f"{name}: no reproduce command"
                assert page.locator("a.btn-download-source-button, a[href$='.ipynb']").count() > 0, (
                    f"{name}: no download"
                )
                check_parameters_shown_once(page, name, "smoke")
                check_results_link(page, path, root / "book" / "chapters" / f"{name}.json")
        page.goto(pages["scorecard"].as_uri(), wait_until="load")
        rows = page.locator("table tbody tr").count()
        assert rows >= len(registry.chapters()), "the scorecard is empty"
        assert summary_counts(page) == claim_counts(root / "book" / "chapters")
        page.goto(pages["robustness"].as_uri(), wait_until="load")
        text = page.inner_text("body")
        assert "coverage_threshold" in text and "Why this sweep" in text, "the smoke preset's sweep is not on the page"
        assert page.locator("img").count() > 0, "robustness: no figure"
        page.goto(pages["intro"].as_uri(), wait_until="load")
        page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=15000)
        check_feature_cards(page, site, root)
        browser.close()
    assert not external, f"pages fetched from the network: {external[:5]}"


def check_feature_cards(page, site: Path, root: Path) -> None:
    """Chapter 5's page links a card for each of its features; the link opens the card, whose histogram loads and
    whose contexts are there, the token highlighted."""
    doc = json.loads((root / "book" / "chapters" / "reactivation.json").read_text())
    scan = doc["results"].get("depth_scan") or {}  # the smoke book scans a further layer: its cards too
    anchors = {f"feature-{c['feature']}" for c in doc["results"]["feature_cards"].values()} | {
        f"layer-{L}-feature-{c['feature']}" for L, d in scan.items() for c in d["feature_cards"].values()
    }
    chapter = site / "book" / "chapters" / "reactivation.html"
    page.goto(chapter.as_uri(), wait_until="load")
    links = page.locator("a.functok-card-link")
    n_cards = len(doc["results"]["feature_cards"]) + sum(len(d["feature_cards"]) for d in scan.values())
    assert links.count() == n_cards > 0, "chapter 5 links no feature cards"
    assert {link.split("#")[1] for link in (x.get_attribute("href") for x in links.all())} == anchors
    path, anchor = links.first.get_attribute("href").split("#")
    page.goto((chapter.parent / path).resolve().as_uri() + "#" + anchor, wait_until="load")
    for f in sorted(anchors):  # the anchor's section: its histogram has loaded and its contexts highlight a token
        got = page.evaluate(
            """id => { const s = document.getElementById(id)?.closest('section'); if (!s) return null;
                const img = s.querySelector('img');
                return {img: !!img && img.complete && img.naturalWidth > 0,
                        marks: s.querySelectorAll('table.functok-card-contexts mark').length}; }""",
            f,
        )
        assert got is not None, f"no card at #{f}"
        assert got["img"] and got["marks"] > 0, f"#{f}: {got}"


def check_parameters_shown_once(page, name: str, preset: str) -> None:
    """One parameter table; no parameters cell, no papermill cell, no validation code beside it."""
    assert page.locator("table.functok-params").count() == 1, f"{name}: expected one parameter table"
    code = [t for t in page.locator("div.cell_input, div.highlight").all_inner_texts()]
    blocks = [t for t in code if "# Parameters" in t or "from_notebook(" in t]
    assert not blocks, f"{name}: a parameter block besides the table: {blocks[0][:200]}"
    table = page.locator("table.functok-params").inner_text()
    for f in ("seed", "preset"):
        assert f in table, f"{name}: {f} missing from the parameter table"
    assert table.count("preset") == 1 and preset in table


def check_results_link(page, page_path: Path, results: Path) -> None:
    """The page links its results file, and the link resolves to that file's content."""
    href = page.locator("a.functok-results").get_attribute("href")
    target = (page_path.parent / href).resolve()
    assert target.is_file(), f"{page_path.name}: results link {href} resolves to nothing"
    assert json.loads(target.read_text()) == json.loads(results.read_text())


def claim_counts(results_dir: Path) -> dict[tuple[str, str, str], int]:
    """{(chapter, model, verdict): claims} straight from the results files: a claim id 'x[m]' counts
    for model m, any other for the run ('embedded' at the top level, else its folder's name)."""
    counts: dict[tuple[str, str, str], int] = {}
    for path in sorted(results_dir.glob("*.json")) + sorted(results_dir.glob("*/*.json")):
        doc = json.loads(path.read_text())
        run = "embedded" if path.parent == results_dir else path.parent.name
        for c in doc["claims"]:
            m = re.fullmatch(r".*\[(.+)\]", c["id"])
            key = (doc["chapter"], m.group(1) if m else run, c["verdict"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def summary_counts(page) -> dict[tuple[str, str, str], int]:
    """The scorecard summary's table as {(chapter, model, verdict): count}, read as a reader sees it."""
    table = page.locator("section#summary table").first
    head = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    verdicts = [h.split(" ", 1)[1] for h in head[2:]]  # '\u2714 holds' -> 'holds'
    assert verdicts == ["holds", "fails", "inconclusive", "fragile"]
    out = {}
    for row in table.locator("tbody tr").all():
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        chapter = Path(row.locator("td a").first.get_attribute("href")).stem  # the chapter's page
        for verdict, cell in zip(verdicts, cells[2:]):
            n = int(cell.split()[-1])  # '\u2714 3' or '0'
            if n:
                out[(chapter, cells[1], verdict)] = n
    return out
