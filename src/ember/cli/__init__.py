"""The `ember` command line, an HTTP client of the API (plus `ember serve`)."""
