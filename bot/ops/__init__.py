"""Operator commands (``python -m bot <command>``), one module each."""
