"""Count words

Reads a text file (argv[1]) and prints the ten most frequent words with their counts.
Writes the full table to word_counts.csv in the working directory.
"""

import collections
import csv
import re
import sys


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        words = re.findall(r"[a-z']+", f.read().lower())
    counts = collections.Counter(words)
    for word, n in counts.most_common(10):
        print(f"{n:5d}  {word}")
    with open("word_counts.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["word", "count"])
        writer.writerows(counts.most_common())
    print(f"{len(words)} words, {len(counts)} distinct")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
