"""What job code imports: the job-type API, splits, control-flow exceptions, and the few engine calls a job
type makes (an event on its job's timeline, typed by `EventType`; its sub-jobs). Import from here, not from the
engine's modules.

    from partitions.api import JobType, KeyRange, register
"""

from partitions.events import EventType
from partitions.exceptions import CancelJob, InvalidParams, PartitionsError, Retry, SkipItem
from partitions.health import HealthVerdict
from partitions.job_types import Backoff, JobType, NoParams
from partitions.lifecycle import SYSTEM, event
from partitions.models import Job, SubJob
from partitions.registry import register
from partitions.splits import Items, ItemSpec, KeyRange, Modulo, Split
from partitions.worker.context import Context

__all__ = [
    "SYSTEM", "Backoff", "CancelJob", "Context", "EventType", "HealthVerdict", "InvalidParams", "ItemSpec", "Items",
    "Job", "JobType", "KeyRange", "Modulo", "NoParams", "PartitionsError", "Retry", "SkipItem", "Split", "SubJob",
    "event", "register",
]
