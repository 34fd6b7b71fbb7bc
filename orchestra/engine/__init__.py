"""The engine carries a Plan out: it drives each task's lifecycle through a backend and
writes every change to the task's sidecar."""
