"""Sandboxes: isolated execution environments forked from per-runtime zygotes."""
