"""The invocation service: every entry point invokes functions through it."""
