"""Authentication and authorization: SigV4 verification, IAM policy evaluation and the
encrypted access-key store (issue 15). Nothing here knows about HTTP frameworks."""
