"""Job types by dotted name. Job types register on import of their app's `jobs` module."""

from __future__ import annotations

from django.utils.module_loading import autodiscover_modules

from partitions.core.exceptions import JobCodeError, JobTypeNotFound
from partitions.jobtypes.base import JobType

_registry: dict[str, JobType] = {}


def register[T: type[JobType]](cls: T) -> T:
    """Class decorator: validate the declaration and make the type startable by name."""
    cls.check_declaration()
    existing = _registry.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise JobCodeError(f"job type {cls.name!r} is already registered by {type(existing).__qualname__}")
    _registry[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    _registry.pop(name, None)


def get(name: str) -> JobType:
    """The registered job type, or JobTypeNotFound."""
    try:
        return _registry[name]
    except KeyError:
        raise JobTypeNotFound(name, _registry) from None


def all_types() -> dict[str, JobType]:
    return dict(sorted(_registry.items()))


def autodiscover() -> None:
    """Import `<app>.jobs` of every installed app (called from AppConfig.ready)."""
    autodiscover_modules("jobs")
