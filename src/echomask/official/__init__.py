"""Compatibility with the published EchoMask release: its weight recipe, checkpoint files and key names."""
