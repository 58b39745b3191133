"""What a worker does, in one place: the drain loop (`draining`) claims partitions and runs them (`run`, item
sources in `sources`, items in flight in `concurrency` and `feeding`), keeps their leases (`renewer`), takes
the singleton plan and finalize steps (`steps`), and runs the tick duties (`maintenance`)."""

from partitions.worker.draining import DrainReport, drain, worker_id

__all__ = ["DrainReport", "drain", "worker_id"]
