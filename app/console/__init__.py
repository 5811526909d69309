"""The web console: the built single-page app under `/console`, and its `config.json`."""
