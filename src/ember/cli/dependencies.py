"""Client-side dependency layers for ``spec.requirements`` (interfaces §2).

Built on the ``layers`` branch, which replaces this module at merge: it
installs the requirements for the runtime, publishes (or reuses) the layer
``ember-deps-<hash>`` and returns its LayerVersionArn. Until then ``ember
apply`` reports that requirements are not supported yet.
"""

from __future__ import annotations

from ember.cli.client import EmberClient


def dependency_layer(client: EmberClient, requirements: list[str], runtime: str) -> str:
    """The LayerVersionArn holding ``requirements`` installed for ``runtime``."""
    raise NotImplementedError("built on the layers branch")
