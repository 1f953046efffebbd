"""Extra benchmarks called by ``benchmarks/run.py`` when present: CDA validation throughput."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import cda  # benchmarks/cda.py

    return int(cda.main([]))


if __name__ == "__main__":
    raise SystemExit(main())
