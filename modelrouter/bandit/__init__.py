"""Bandit posteriors and the Thompson allocator."""
