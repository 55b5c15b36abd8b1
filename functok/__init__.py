"""functok: reproduce 'Memory Retrieval and Consolidation in LLMs through Function Tokens'.

Small modules, one concept each. Heavy libraries (torch, transformers, SAELens) are imported inside
the functions that need them, so that `functok params` and parameter validation stay fast.
"""

__version__ = "0.1.0"
