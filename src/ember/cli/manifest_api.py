"""The manifest API (``/_ember/apis/ember.dev/v1``) as the CLI calls it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ember.cli.client import ApiError, EmberClient

PREFIX = "/_ember/apis/ember.dev/v1"


def _one(namespace: str, name: str) -> str:
    return f"{PREFIX}/namespaces/{quote(namespace, safe='')}/functions/{quote(name, safe='')}"


class ManifestApi:
    def __init__(self, client: EmberClient) -> None:
        self._client = client

    def list(
        self, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        path = f"{PREFIX}/functions"
        if namespace is not None:
            path = f"{PREFIX}/namespaces/{quote(namespace, safe='')}/functions"
        params = {"labelSelector": selector} if selector else None
        return list(self._client.call("GET", path, params=params).get("items") or [])

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self._client.call("GET", _one(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, body: dict[str, Any], dry_run: bool = False) -> tuple[str, dict[str, Any]]:
        """Server-side apply; (created|configured|unchanged, the object)."""
        metadata = body["metadata"]
        params = {"dryRun": "All"} if dry_run else None
        answer = self._client.call(
            "PATCH",
            _one(metadata.get("namespace") or "default", metadata["name"]),
            json_body=body,
            params=params,
        )
        return str(answer["action"]), dict(answer["object"])

    def delete(self, namespace: str, name: str) -> dict[str, Any]:
        return self._client.call("DELETE", _one(namespace, name))
