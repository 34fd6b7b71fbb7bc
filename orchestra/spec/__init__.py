"""The spec layer: load YAML with line marks, check it against JSON Schema and the semantic
rules of design.md, and turn it into dataclasses. It imports no backend."""
