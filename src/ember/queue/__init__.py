"""Asynchronous invocation: the durable event queue, its pollers, retries and destinations.

``base.py`` is the backend contract (``sqlite.py`` durable, ``memory.py`` in
process); ``retry.py`` is Lambda's retry rules as a pure function of time;
``configs.py`` owns event-invoke-configs; ``records.py`` builds destination
invocation records; ``pollers.py`` runs the supervisor that drains the queue
through an injected delivery callable (the invocation service), so this
package never imports ``ember.invoke`` or ``ember.api``.
"""
