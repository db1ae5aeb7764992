"""The Telegram adapter and the entry point (``python -m bot``)."""
