"""Function words labelled without frequency: the closed-class word list (`data/closed_class_words.yaml`,
written down by the project, not from the paper) and punctuation. Chapter 1 compares it with the
frequency-defined function tokens; chapter 2's closed-class control uses it as labels that counts do not
decide."""

from __future__ import annotations

from functok.core.config import ROOT

WORDS = ROOT / "data" / "closed_class_words.yaml"


def closed_class_words() -> dict[str, set[str]]:
    """Category -> its lower-case words (the punctuation list included)."""
    import yaml

    raw = yaml.safe_load(WORDS.read_text())
    return {cat: {str(w).lower() for w in words} for cat, words in raw.items()}


def word_class(token: str, classes: dict[str, set[str]]) -> str:
    """'punctuation/symbol' (incl. white space, digits, symbols), 'fragment' (letters without a
    leading space: in these tokenizers a piece inside a word, such as the 'it' of 'split', or a word
    glued to punctuation; it is not counted as the word), a closed class, or 'content'."""
    w = token.strip().lower()
    if not w or not any(ch.isalpha() for ch in w):
        return "punctuation/symbol"
    if not token[:1].isspace():
        return "fragment"
    for cat, words in classes.items():
        if w in words:
            return cat
    return "content"


def function_label(token: str, classes: dict[str, set[str]]) -> str | None:
    """'function' (a closed-class word with its leading space, or punctuation / white space: no letters or
    digits), 'content' (any other whole word), or None (word fragments, numbers and mixed symbols: neither)."""
    kind = word_class(token, classes)
    if kind == "punctuation/symbol":
        return "function" if not any(ch.isalnum() for ch in token) else None
    if kind == "fragment":
        return None
    return "content" if kind == "content" else "function"
