"""Settings from the environment, parsed one way on both sides (the server's ``ServingConfig``, the
Lambda and Batch entry points): an unset or blank variable takes the default, a bad value raises
``error`` (a ``ValueError`` unless the caller names its own type) naming the variable and what it
must be. Read at start-up, never at import. Standard library only, like the rest of ``contract``."""

from __future__ import annotations

from collections.abc import Mapping

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None = None,
            error: type[Exception] = ValueError) -> int:
    """An integer from ``low`` to ``high`` (no upper bound when None)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise error(f"{name} must be {span}, got {value}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool, error: type[Exception] = ValueError) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise error(f"{name} must be true or false, got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...],
               error: type[Exception] = ValueError) -> str:
    """One of ``choices`` (case-insensitive)."""
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw
