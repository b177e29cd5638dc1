"""The ``Function`` manifest: schema, loading with line numbers, validation, schedules.

Shared by the CLI (which checks files before sending them) and the server
(which checks every write again); it imports nothing of the platform.
"""

from ember.manifests.loader import Manifest, ManifestError, Problem, load, parse_text
from ember.manifests.schema import API_VERSION, KIND, function_schema
from ember.manifests.validate import check, problems_of

__all__ = [
    "API_VERSION",
    "KIND",
    "Manifest",
    "ManifestError",
    "Problem",
    "check",
    "function_schema",
    "load",
    "parse_text",
    "problems_of",
]
