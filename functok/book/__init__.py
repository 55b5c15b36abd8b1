"""The book layer: configs and validation, the chapter registry, cache, results files, CLI, running
notebooks and building the site. It imports no other layer of functok."""
