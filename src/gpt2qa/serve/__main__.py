"""`python -m gpt2qa.serve ...`: the same flags as `gpt2qa serve`."""

import sys

from gpt2qa.serve import main

sys.exit(main())
