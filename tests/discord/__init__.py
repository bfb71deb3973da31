"""Discord adapter tests. discord.py imports the deprecated `audioop` (voice playback, unused
here); import it once with that warning silenced, since the suite turns warnings into errors."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401
