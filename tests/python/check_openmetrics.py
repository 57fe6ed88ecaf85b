"""Parses OpenMetrics text from stdin with prometheus_client's strict
OpenMetrics parser (it rejects anything the 1.0.0 format does not allow:
a missing `# EOF`, `_total` on a counter family name, a `_created` that does
not belong to a counter or histogram series, bad units, unsorted histogram
buckets ...) and prints what it understood as JSON: per family its type,
unit and sample names, so the test can check it was read as meant."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "unit": family.unit,
        "samples": sorted({s.name for s in family.samples}),
        "count": len(family.samples),
    }
json.dump(families, sys.stdout, indent=1, sort_keys=True)
