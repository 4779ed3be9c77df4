"""Subcommands of the parts, registered in :mod:`llm3d.cli`."""
