"""Allows ``python -m gpt2qa`` and ``accelerate launch -m gpt2qa train ...``."""

from gpt2qa.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
