"""Allows ``python -m gpt2qa`` and ``accelerate launch -m gpt2qa train ...``."""

import os
import sys

from gpt2qa.cli import main


def launched() -> bool:
    """Whether a launcher (torchrun, `gpt2qa launch`, `accelerate launch`) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


if __name__ == "__main__":
    code = main()
    if launched():
        # A launched process ends here, without the interpreter's finalization: gloo's threads
        # can still hold work whose teardown then aborts a finished process ("terminate called
        # without an active exception", exit 134), even after `cli.close_process_group`. The
        # command has closed its files and trackers; only the standard streams need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
