"""The book layer, the application on top: the CLI, running chapter notebooks (and their freshness),
sweeps on Ray, the robustness page, the site and the live forms. It may import every other layer."""
