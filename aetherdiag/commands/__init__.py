"""One module per CLI command; each registers itself on the typer app in cli.py."""
