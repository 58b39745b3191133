"""Partitioned batch jobs for Django on PostgreSQL. Job code imports the API from here (or `partitions.api`):

    from partitions import JobType, KeyRange, register

The names resolve on first use (PEP 562), so importing the package never loads models before Django's app
registry is ready.
"""

from typing import Any

#: The names `partitions.api` exports, re-exported here.
__all__ = [
    "SYSTEM", "Backoff", "CancelJob", "Context", "EventType", "HealthVerdict", "InvalidParams", "ItemSpec", "Items",
    "Job", "JobType", "KeyRange", "Modulo", "NoParams", "PartitionsError", "Retry", "SkipItem", "Split", "SubJob",
    "event", "register",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from partitions import api

        return getattr(api, name)
    raise AttributeError(f"module 'partitions' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
