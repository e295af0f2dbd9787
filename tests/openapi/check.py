#!/usr/bin/env python3
"""Validate the admin API's OpenAPI document, and real responses against it.

Driven by tests/openapi.rs (run with PYTHONPATH=tests/openapi/py-deps, which .ci/run fills from
tests/openapi/requirements.txt):

    check.py DOCUMENT.json                 the document itself (openapi-spec-validator)
    check.py DOCUMENT.json BODIES.json     ... and each recorded body against its schema

BODIES.json is a list of {"label": "GET /v1/events 200", "schema": "#/json/pointer", "body": ...}:
the pointer names the schema, inside the document, that the response's status and media type
select (the Rust test resolved the operation, status and content type). Each body is validated
with the OpenAPI 3.1 schema dialect (openapi-schema-validator's OAS31Validator), every `$ref`
resolved inside the document, formats (uuid, date-time) asserted, and no property the
document does not describe (see `closed`). Prints one line per failure and exits 1 if there
was any.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:authtrail:admin-openapi"


def closed(node):
    """A copy of the document in which every object schema that lists `properties` and says
    nothing about other properties refuses them (`unevaluatedProperties: false`, which sees
    through `allOf`): a field the server sends that the document does not describe fails the
    body. The served document stays open (clients must tolerate fields added later); the test
    holds the server to describing each one it sends."""
    if isinstance(node, list):
        return [closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed(v) for k, v in node.items()}
    if (
        isinstance(node.get("properties"), dict)
        and "additionalProperties" not in node
        and "unevaluatedProperties" not in node
    ):
        out["unevaluatedProperties"] = False
    return out


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    failures = []

    try:
        spec_errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    except Exception as e:  # a dangling $ref ends the walk with an exception, not an error
        spec_errors = [e]
    for e in spec_errors:
        if hasattr(e, "absolute_path"):
            path = "/".join(str(p) for p in e.absolute_path)
            failures.append(f"document: {path}: {e.message}")
        else:
            failures.append(f"document: {type(e).__name__}: {str(e)[:300]}")
    print(f"document: {len(spec_errors)} error(s) (openapi-spec-validator, OpenAPI 3.1)")

    if len(argv) == 3:
        with open(argv[2], encoding="utf-8") as f:
            bodies = json.load(f)
        resource = Resource.from_contents(closed(doc), default_specification=DRAFT202012)
        registry = Registry().with_resource(BASE, resource)
        for b in bodies:
            schema = {"$ref": BASE + b["schema"]}
            validator = OAS31Validator(
                schema, registry=registry, format_checker=oas31_format_checker
            )
            errors = sorted(validator.iter_errors(b["body"]), key=lambda e: list(e.path))
            for e in errors:
                where = "/".join(str(p) for p in e.absolute_path) or "(body)"
                failures.append(f"{b['label']}: {where}: {e.message}")
        print(f"bodies: {len(bodies)} validated")

    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
