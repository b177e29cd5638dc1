"""The Frontend: Lambda's REST API and ember's extensions, over ASGI."""
