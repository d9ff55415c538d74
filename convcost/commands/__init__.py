"""One module per CLI command; each registers itself on the shared typer app."""
