"""What a worker does, in one place: the drain loop (`draining`) claims partitions and runs them (`run`, job
code called through `invoke`, item sources in `sources`, items in flight in `concurrency` and `feeding`),
records how each run ended (`outcomes`, committed by `commit`), keeps their leases (`renewer`), takes the
singleton plan and finalize steps (`steps`), and runs the tick duties (`maintenance`)."""

from partitions.worker.draining import DrainReport, drain, worker_id

__all__ = ["DrainReport", "drain", "worker_id"]
