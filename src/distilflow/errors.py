"""The one base class of errors a person can fix (bad data, settings, registry state): they get a message, no trace.

A bug keeps its traceback. ``distilflow stage`` (:mod:`distilflow.runtime.dispatch`) and the other commands tell the
two apart by this class, so an error type joins the clean-message side by deriving from it, in the module that
raises it.
"""


class UserError(Exception):
    """Bad input, settings or registry state: the message says what is wrong and what to do."""
