"""Errors meant for people. Anything else that escapes a command is a bug: it is logged with its
traceback and the channel gets a short apology with a reference id (see bot.core)."""


class UserError(Exception):
    """A problem the user can fix; its text is shown as the reply, as is."""
