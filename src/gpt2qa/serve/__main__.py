"""`python -m gpt2qa.serve ...`: the same flags as `gpt2qa serve`."""

import sys

from gpt2qa.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
