"""Taxonomy, policies (labels → allow/review/block) and, later, live rules."""
