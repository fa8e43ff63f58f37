"""The one error a ViewDefinition can raise, at compile time or when its SQL runs."""
from __future__ import annotations

# Prefix of the messages that compiled SQL raises through DuckDB's error(): lets a
# runner tell "this view does not fit this data" apart from any other database error.
RUNTIME_MARKER = "ViewDefinitionError: "


class ViewDefinitionError(ValueError):
    """A ViewDefinition is invalid, uses something this engine does not support, or
    (when raised while running) produced a value its definition forbids, e.g. several
    values in a column that is not `collection: true`."""


def raised_by_view(error: Exception, view: dict) -> ViewDefinitionError | None:
    """The ViewDefinitionError a compiled view raised inside DuckDB, if it was one."""
    message = str(error)
    if RUNTIME_MARKER not in message:
        return None
    name = view.get("name") or view.get("resource")
    return ViewDefinitionError(f"view {name!r}: {message.split(RUNTIME_MARKER, 1)[1]}")
