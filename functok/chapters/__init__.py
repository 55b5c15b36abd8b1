"""One package per chapter (analysis, claims, plots) plus `common`, what they share. A chapter may
import any lower layer and `chapters.common`, never another chapter."""
