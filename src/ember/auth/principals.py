"""Who a request acts as: an account's root, a user of an account, or an AWS service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An identity of one account: its root (``user`` None) or one named user.

    # Invariant: ``account_id`` is 12 digits; ``user`` is an IAM user name (no slash).
    """

    account_id: str
    user: str | None = None

    @property
    def arn(self) -> str:
        if self.user is None:
            return f"arn:aws:iam::{self.account_id}:root"
        return f"arn:aws:iam::{self.account_id}:user/{self.user}"

    @property
    def is_root(self) -> bool:
        return self.user is None


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    """An AWS service acting on an account's behalf (``s3.amazonaws.com``): it has no
    identity policies, so only a resource policy can let it in."""

    service: str

    @property
    def arn(self) -> str:
        return self.service


Caller = Principal | ServicePrincipal
