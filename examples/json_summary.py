"""Summarise JSON records

Reads a JSON list of objects (argv[1]) and prints how many records there are and
which keys they use, with the share of records that have each key.
"""

import json
import sys


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        print("expected a JSON list of objects", file=sys.stderr)
        return 1
    keys: dict[str, int] = {}
    for record in records:
        for key in record:
            keys[key] = keys.get(key, 0) + 1
    print(f"{len(records)} records")
    for key, n in sorted(keys.items()):
        print(f"  {key}: {100 * n / len(records):.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
