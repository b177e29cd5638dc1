"""Observability: what every invocation did, kept for operators (issue 16).

The invocation service hands each finished call to the ``Recorder``
(``recorder.py``) as one tuple; everything else happens off the call's path:
Prometheus counters (``metrics.py``), the invocation history and per-minute
series in the metadata store (``base.py``: the store's contract; ``sqlite.py``,
``postgres.py``), and OTLP spans (``tracing.py``, only with ``--otlp-endpoint``).
"""
