"""`python -m gpt2qa.serve ...`: the same flags as `gpt2qa serve`.

The CLI is imported here and not in the package, so that `gpt2qa.serve` never imports the CLI
(the CLI imports the package to build its parser).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpt2qa.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gpt2qa.serve ...`: `gpt2qa serve` with these flags (exit status as the CLI's)."""
    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
