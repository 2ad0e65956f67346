"""workers: what runs around the lock — the Lambda handlers, the `chatops` CLI and the local stack."""
