"""One package per chapter (config, analysis, claims, plots, live) plus `registry`, the chapters in book
order, and `common`, what they share. A chapter may import any lower layer, `chapters.registry` and
`chapters.common`, never another chapter."""
