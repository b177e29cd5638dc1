"""Code that runs inside sandboxes: the native Python runtime and its wire format.

Everything in this package is imported by the zygote under the function's own
interpreter (python3.9 and up), so it uses the standard library only and keeps
to syntax that Python 3.9 understands.
"""
