"""User-facing harness errors: the CLI prints the message on one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (workload, record, arguments), with its fix."""
    exit_code = 2
