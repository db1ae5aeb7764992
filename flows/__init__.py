"""The conversation and the questionnaires: pure, no Telegram, no database, no clock.

Public API: ``ScreeningFlow`` turns one event into a ``Reply`` (new session + actions).
"""
