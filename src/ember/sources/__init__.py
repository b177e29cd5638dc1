"""Event source mappings: Lambda's third way to invoke (CreateEventSourceMapping, ...)."""
