"""The Worker: package cache and sandbox lifecycle on one host."""
