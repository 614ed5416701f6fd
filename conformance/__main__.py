"""``python -m conformance --sink pkg.mod.Class [pytest options]``: run the suite with pytest."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Run pytest over the installed suite with ``argv`` (conformance and pytest options).

    Returns pytest's exit code: 0 conformant (SHOULD gaps are reported, not failed unless
    ``--conformance-strict``), 1 a check failed, 4 a usage error (e.g. an unresolvable
    target). The verdict table is printed at the end; the JSON report goes to
    ``.conformance/report.json`` unless ``--conformance-report`` says otherwise.
    """
    import pytest

    args = list(sys.argv[1:] if argv is None else argv)
    suite = str(Path(__file__).resolve().parent)
    return int(pytest.main([suite, "-p", "conformance.plugin", *args]))


if __name__ == "__main__":
    raise SystemExit(main())
