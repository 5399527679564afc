"""Exceptions raised by launchkit's library code.

Every message is a full sentence for the end user that names the object at fault.
The CLI prints ``Error: <message>`` and exits with ``exit_code``.
"""


class LaunchkitError(Exception):
    "Base class for every error a user can cause or fix."

    exit_code = 1


class NotFound(LaunchkitError):
    "The named object does not exist."


class AlreadyExists(LaunchkitError):
    "An object with that name already exists."


class InvalidTransition(LaunchkitError):
    "The object cannot move from its current status to the requested one."


class ConfigError(LaunchkitError):
    "The configuration or workspace is missing or wrong."


class WorkspaceNotFound(ConfigError):
    "No launchkit workspace was found."

    exit_code = 2


class SchemaOutOfDate(ConfigError):
    "The database schema is older than this version of launchkit."


class InputError(LaunchkitError):
    "A file, row, field or argument given by the user is invalid."


class PaymentError(LaunchkitError):
    "Stripe refused or failed a payment operation."


class DeliveryError(LaunchkitError):
    "An email could not be delivered."


class SendInProgress(DeliveryError):
    "Another sender already holds the send lock for this database."
