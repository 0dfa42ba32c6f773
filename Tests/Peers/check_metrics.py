#!/usr/bin/env python3
"""Parses Prometheus text from stdin with prometheus_client (an independent parser) and checks the
exposition rules our registry promises. Prints one JSON object: families and sample values."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
families = {}
for family in text_string_to_metric_families(text):
    samples = {}
    for s in family.samples:
        key = s.name + json.dumps(s.labels, sort_keys=True)
        samples[key] = s.value
    families[family.name] = {"type": family.type, "samples": samples}

problems = []
type_lines = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
for name in set(type_lines):
    if type_lines.count(name) != 1:
        problems.append(f"{name} has {type_lines.count(name)} TYPE lines")
for name, family in families.items():
    if family["type"] == "histogram" and not any('"le": "+Inf"' in k for k in family["samples"]):
        problems.append(f"histogram {name} has no +Inf bucket")
print(json.dumps({"families": families, "problems": problems}))
