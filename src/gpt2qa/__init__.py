"""gpt2qa: extractive question answering with decoder-only models on SQuAD 2.0."""

__version__ = "0.1.0"
