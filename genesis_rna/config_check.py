"""One-line messages for workflow config errors found by the JSON schema.

Snakemake's ``validate`` reports a schema violation as jsonschema's full text: the error, then
the failing sub-schema and the offending config section, ~50 lines in which the bad key is
easy to miss. The Snakefile passes that failure to :func:`config_error_message`, which names
the key path and, for an unknown key, the valid keys at that level (read from the schema).
"""

from __future__ import annotations

import re

from jsonschema.exceptions import ValidationError

MAX_VALUE_CHARS = 60  # longer values are cut in the message


def find_validation_error(exc: BaseException) -> ValidationError | None:
    """The jsonschema error behind ``exc`` (itself, or in its cause/context chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ValidationError):
            return exc
        seen.add(id(exc))
        # the chain Python itself would print: an explicit cause, else the unsuppressed context
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def _key_path(path) -> str:
    return ".".join(str(p) for p in path)


def _value(instance) -> str:
    text = repr(instance)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def describe_validation_error(error: ValidationError) -> str:
    """``error`` as one line naming the config key path (see the module docstring)."""
    path = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if (error.validator == "additionalProperties" and error.validator_value is False
            and isinstance(error.instance, dict)):
        known = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        unknown = [str(k) for k in error.instance
                   if k not in known and not any(re.search(p, str(k)) for p in patterns)]
        names = ", ".join(f"'{path + '.' if path else ''}{k}'" for k in unknown)
        where = f" under '{path}'" if path else ""
        return (f"config error: unknown key{'s' if len(unknown) > 1 else ''} {names}; "
                f"valid keys{where}: {', '.join(known) or '(none)'}")
    if not path:
        return f"config error: {error.message}"
    if isinstance(error.instance, dict | list):
        return f"config error: '{path}': {error.message}"
    return f"config error: '{path}' = {_value(error.instance)}: {error.message}"


def config_error_message(exc: BaseException) -> str:
    """One line for a failed config validation; ``str(exc)`` when no schema error is behind it."""
    error = find_validation_error(exc)
    return describe_validation_error(error) if error is not None else str(exc)
