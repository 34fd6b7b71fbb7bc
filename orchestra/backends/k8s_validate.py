"""Rendered manifests checked against the real Kubernetes OpenAPI schema, offline.

``kubernetes-validate`` (an optional dependency: ``pip install 'orchestra[validate-k8s]'``)
ships the schema of every Kubernetes version; its ``validate()`` rebuilds a validator per
call (~13 ms). Here one validator per (apiVersion, kind) is built and reused (~0.3 ms per
manifest). Strict mode: unknown fields are errors. Rules only the API server knows (a Job's
``restartPolicy``, DNS-1123 names) are checked by orchestra's own tests.
"""

from __future__ import annotations

import re
from typing import Any

from orchestra.errors import FatalError


class ManifestValidator:
    def __init__(self, version: str | None = None, *, strict: bool = True) -> None:
        try:
            import kubernetes_validate.utils as kv
        except ImportError as exc:
            raise FatalError(
                "--validate needs kubernetes-validate: pip install 'orchestra[validate-k8s]'"
            ) from exc
        self._kv = kv
        wanted = version or kv.latest_version()
        self.version = [
            v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(wanted)
        ][-1]
        self.schema_dir = f"v{self.version}-local" + ("-strict" if strict else "")
        self._validators: dict[tuple[str, str], Any] = {}

    def _validator(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        validator = self._validators.get(key)
        if validator is None:
            from jsonschema import Draft202012Validator
            from referencing import Registry, Resource

            group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            try:
                schema = self._kv.schema_contents(
                    f"kubernetes-json-schema/{self.schema_dir}/{kind.lower()}-{group}.json",
                    self.version,
                )
            except FileNotFoundError as exc:
                raise FatalError(f"no Kubernetes schema for {api_version} {kind}") from exc
            definitions = self._kv.schema_contents(
                f"kubernetes-json-schema/{self.schema_dir}/_definitions.json", self.version
            )
            registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
            registry = Resource.from_contents(definitions) @ registry
            validator = self._validators[key] = Draft202012Validator(schema, registry=registry)
        return validator

    def errors(self, manifest: dict[str, Any]) -> list[str]:
        """Every schema error of one manifest, as ``path: message``."""
        validator = self._validator(str(manifest.get("apiVersion")), str(manifest.get("kind")))
        found = []
        for error in validator.iter_errors(manifest):
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            found.append(f"{path}: {error.message}")
        return sorted(found)
