"""Sum sales by region

Reads a CSV with columns region,amount (argv[1]) and prints the total per region.
Writes totals.json to the working directory.
"""

import csv
import json
import sys
from decimal import Decimal


def main(argv: list[str]) -> int:
    totals: dict[str, Decimal] = {}
    with open(argv[1], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            totals[row["region"]] = totals.get(row["region"], Decimal(0)) + Decimal(row["amount"])
    for region, total in sorted(totals.items()):
        print(f"{region:10s} {total:>10}")
    with open("totals.json", "w", encoding="utf-8") as out:
        json.dump({k: str(v) for k, v in totals.items()}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
