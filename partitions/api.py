"""What job code imports: the job-type API, splits, control-flow exceptions, and the few engine calls a job
type makes (an event on its job's timeline, typed by `EventType`; its sub-jobs). Import from here, not from the
engine's modules.

    from partitions.api import JobType, KeyRange, register
"""

from partitions.core.events import EventType
from partitions.core.exceptions import CancelJob, InvalidParams, PartitionsError, Retry, SkipItem
from partitions.engine.health import HealthVerdict
from partitions.engine.lifecycle import SYSTEM, event
from partitions.jobtypes.base import Backoff, JobType, NoParams
from partitions.jobtypes.registry import register
from partitions.jobtypes.splits import Items, ItemSpec, KeyRange, Modulo, Split
from partitions.models import Job, SubJob
from partitions.worker.context import Context

__all__ = [
    "SYSTEM", "Backoff", "CancelJob", "Context", "EventType", "HealthVerdict", "InvalidParams", "ItemSpec", "Items",
    "Job", "JobType", "KeyRange", "Modulo", "NoParams", "PartitionsError", "Retry", "SkipItem", "Split", "SubJob",
    "event", "register",
]
