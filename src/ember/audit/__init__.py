"""The audit log of control-plane changes: who changed what, allowed or denied, and when.

The guard hands each change's ``AuditEntry`` to ``AuditLog.record`` (never
blocking the request); the log's flush loop writes them in batches to an
``AuditStore`` (``base.py``): SQLite in the data dir (embedded) or a table in
the cluster's PostgreSQL, pruned to the newest ``Settings.audit_retention``.
``GET /_ember/audit`` and ``ember audit`` read it back, newest first.
"""
