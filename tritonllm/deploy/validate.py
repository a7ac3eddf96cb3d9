"""Validate manifests offline against Kubernetes' own JSON schemas.

Built-in kinds use the schemas bundled in the ``kubernetes-validate`` package (strict mode: an
unknown field is an error, as ``kubectl apply --validate=strict`` would make it). Custom
resources use the schemas shipped in deploy/k8s/schemas/, which may point into Kubernetes'
definitions (a LeaderWorkerSet's pod templates are checked as real PodTemplateSpecs). No network.

``kubernetes-validate`` is a development dependency: this module imports it when called.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

KUBERNETES_VERSION = "1.37"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "schemas"
CUSTOM_SCHEMAS = {("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset-v1.json"}


class ManifestError(ValueError):
    """A manifest does not match its schema; the message names the object and the field."""


def validate(doc: dict) -> None:
    """Raise ManifestError unless ``doc`` is a valid object of its kind."""
    import jsonschema

    key = (doc.get("apiVersion"), doc.get("kind"))
    try:
        if key in CUSTOM_SCHEMAS:
            _custom_validator(CUSTOM_SCHEMAS[key]).validate(doc)
        else:
            _builtin(doc)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ManifestError(f"{_name(doc)}: {where}: {exc.message}") from None


def _builtin(doc: dict) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        raise ManifestError(f"{_name(doc)}: no schema for {doc.get('apiVersion')} "
                            f"{doc.get('kind')} in Kubernetes {KUBERNETES_VERSION}") from None


@lru_cache(maxsize=None)
def _custom_validator(schema_file: str):
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    definitions = schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict/_definitions.json",
        KUBERNETES_VERSION)
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _name(doc: dict) -> str:
    name = (doc.get("metadata") or {}).get("name", "?")
    return f"{doc.get('kind', '?')}/{name}"
