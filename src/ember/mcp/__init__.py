"""MCP: exposed functions become tools that AI hosts list and call.

``catalog``   which functions are tools, with their schemas (durable)
``results``   arguments checked against a tool's schema, outcomes turned into tool results
``endpoint``  the Streamable HTTP server at ``/mcp`` (low-level SDK ``Server``)
``stdio``     ``ember mcp``: the same tools over stdio, as an HTTP client of a running ember

``results`` and ``stdio`` import nothing of the server, so the CLI may use them.
"""
