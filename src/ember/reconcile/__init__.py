"""The reconcile loop: manifests' controller and the schedule triggers it keeps.

Above the registry layer (``ember.control``) and the invocation service: the
controller drives the registry, throttle settings, event-invoke-configs,
the Worker Manager, function URLs and the MCP catalog toward each Function
object's spec; the scheduler fires schedule triggers through the invocation
service. Both are cluster-wide singleton duties (``Leadership``).
"""
