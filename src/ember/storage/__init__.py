"""Storage: function metadata (SQLite) and code packages (a local directory)."""
