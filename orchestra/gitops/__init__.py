"""GitOps: specs read from a git commit (never the working tree), the storage-wide reconcile
lock, and the record of the last reconciled commit. The only package that imports ``git``."""
