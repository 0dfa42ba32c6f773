#!/usr/bin/env python3
"""Validates a JSON document (stdin) against one schema of openapi.yaml's components, with
jsonschema_rs (an independent validator). OpenAPI 3.0's `nullable: true` becomes a JSON Schema
type that admits null. Prints one error per line; exit 0 when valid, 1 when not.
Usage: check_schema.py OPENAPI_YAML SCHEMA_NAME < document.json
"""
import json
import sys

import jsonschema_rs
import yaml


def convert(node):
    if isinstance(node, dict):
        out = {k: convert(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") is True and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [convert(v) for v in node]
    return node


def main() -> int:
    with open(sys.argv[1]) as f:
        api = yaml.safe_load(f)
    components = convert(api["components"])
    schema = {"$ref": f"#/components/schemas/{sys.argv[2]}", "components": components}
    document = json.load(sys.stdin)
    validator = jsonschema_rs.Draft7Validator(schema)
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(document)]
    for line in errors:
        print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
