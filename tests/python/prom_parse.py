"""Parses Prometheus text exposition files with prometheus_client's parser
(the reference Python client) and prints their samples as JSON:

  [{"file", "family", "type", "name", "labels": {...}, "value"}]

A file the parser rejects makes the script fail with the parser's error.
Usage: prom_parse.py FILE...
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    samples = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.append(
                    {
                        "file": path,
                        "family": family.name,
                        "type": family.type,
                        "name": s.name,
                        "labels": s.labels,
                        "value": s.value,
                    }
                )
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main()
