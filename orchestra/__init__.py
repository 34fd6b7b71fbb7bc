"""Orchestra: a declarative, GitOps-style batch task processor for shared research clusters."""

__version__ = "0.1.0"
