"""The status sidecar of a task: ``events.jsonl`` (append-only log, the truth) and
``status.yaml`` (an atomically written snapshot of it, readable by any YAML parser)."""
