"""SnapStart's setting and a version's template, in Lambda's words (no I/O here).

``ApplyOn`` is configuration: Lambda's ``PublishedVersions`` (each version
published from then on gets a template: Init runs once in it, and the
version's sandboxes start from its initialised state) or ``None``; ember adds
``LatestAndPublished``, which gives ``$LATEST`` a template too (for
development). A version's ``Template`` is status, not configuration: it moves
without a new RevisionId, from ``PENDING`` (set when the version appears:
PublishVersion, or a create or update of ``$LATEST`` under the extension) to
one of the three outcomes that ``ember.reconcile.snapstart`` records once the
sandbox backend has tried. ``status_fields`` renders it as Lambda's
``State``, ``StateReasonCode``, ``LastUpdateStatus`` and ``SnapStart``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ember.control.arns import LATEST

PUBLISHED_VERSIONS = "PublishedVersions"
NONE = "None"
# ember's extension: $LATEST gets a template as well as each published version.
LATEST_AND_PUBLISHED = "LatestAndPublished"
# Lambda's enum (botocore's SnapStartApplyOn), in its order, then ember's extension.
LAMBDA_APPLY_ON = (PUBLISHED_VERSIONS, NONE)
APPLY_ON = (*LAMBDA_APPLY_ON, LATEST_AND_PUBLISHED)

# StateReasonCode of a refused template. Lambda's enum has no code for "this version
# cannot be snapshotted"; InvalidConfiguration is the closest (what the function is or
# does rules SnapStart out), and StateReason starts with the backend's own code.
REFUSED_CODE = "InvalidConfiguration"
# StateReasonCode of a template whose Init failed: Lambda's, for a failed Init.
FAILED_CODE = "FunctionError"
# Lambda's StateReason cap is not modelled; an Init error's text is cut here.
MAX_REASON = 1024


class Template(enum.Enum):
    # SnapStart does not apply to this version: its sandboxes run Init.
    OFF = "Off"
    # Being made: State Pending (StateReasonCode Creating), or, after an update of
    # $LATEST, LastUpdateStatus InProgress. Its sandboxes may start meanwhile.
    PENDING = "Pending"
    # Made: new sandboxes start from it. OptimizationStatus On.
    READY = "Ready"
    # The backend cannot snapshot this version (Init left threads or sockets, or
    # its isolation has no templates): State Active, OptimizationStatus Off,
    # StateReasonCode and StateReason say why; its sandboxes run Init.
    REFUSED = "Refused"
    # Init failed in the template: State Failed (LastUpdateStatus Failed after an
    # update of $LATEST), StateReasonCode FunctionError, StateReason its error.
    FAILED = "Failed"


@dataclass(frozen=True)
class Outcome:
    """What making a template found; ``FunctionRecord.settled`` records it."""

    template: Template
    reason_code: str | None = None
    reason: str | None = None

    @classmethod
    def ready(cls) -> Outcome:
        return cls(Template.READY)

    @classmethod
    def refused(cls, backend_code: str, reason: str) -> Outcome:
        return cls(Template.REFUSED, REFUSED_CODE, _cut(f"{backend_code}: {reason}"))

    @classmethod
    def failed(cls, error_type: str, message: str) -> Outcome:
        return cls(Template.FAILED, FAILED_CODE, _cut(f"{error_type}: {message}"))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def applies(apply_on: str, version: str) -> bool:
    """Whether a version (``$LATEST`` or a number) of a function with ``apply_on``
    gets a template: published ones with either setting, ``$LATEST`` only with
    the extension (as on Lambda, where ``$LATEST`` never has one)."""
    if version == LATEST:
        return apply_on == LATEST_AND_PUBLISHED
    return apply_on in (PUBLISHED_VERSIONS, LATEST_AND_PUBLISHED)


def initial(apply_on: str, version: str) -> Template:
    """A new version's template: to be made, or none at all."""
    return Template.PENDING if applies(apply_on, version) else Template.OFF


# What Lambda says of a function being created; ember's words for why.
_CREATING = "ember is making the SnapStart template of this version: Init runs once in it."
_UPDATING = "ember is making the SnapStart template of the updated function: Init runs in it."


def status_fields(
    apply_on: str,
    template: Template,
    reason_code: str | None,
    reason: str | None,
    after_update: bool,
) -> dict[str, Any]:
    """``SnapStart``, ``State`` (and its reason) and ``LastUpdateStatus`` (and its
    reason) of a version whose template is ``template``; ``after_update``: an update
    of ``$LATEST`` asked for it (Lambda reports updates in LastUpdateStatus)."""
    optimized = template in (Template.PENDING, Template.READY)
    fields: dict[str, Any] = {
        "SnapStart": {"ApplyOn": apply_on, "OptimizationStatus": "On" if optimized else "Off"},
        "State": "Active",
        "LastUpdateStatus": "Successful",
    }
    if template is Template.PENDING:
        if after_update:
            fields.update(LastUpdateStatus="InProgress", LastUpdateStatusReason=_UPDATING)
        else:
            fields.update(State="Pending", StateReasonCode="Creating", StateReason=_CREATING)
    elif template is Template.FAILED and after_update:
        fields.update(
            LastUpdateStatus="Failed",
            LastUpdateStatusReasonCode=reason_code,
            LastUpdateStatusReason=reason,
        )
    elif template is Template.FAILED:
        fields.update(State="Failed", StateReasonCode=reason_code, StateReason=reason)
    elif template is Template.REFUSED:
        fields.update(StateReasonCode=reason_code, StateReason=reason)
    return fields


__all__ = [
    "APPLY_ON",
    "LAMBDA_APPLY_ON",
    "LATEST_AND_PUBLISHED",
    "Outcome",
    "Template",
    "applies",
    "initial",
    "status_fields",
]
