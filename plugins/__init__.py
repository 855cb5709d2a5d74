"""Bundled plugins: the candidate generators and the catalog commands, registered like third-party plugins."""
