"""The coordination machinery on PostgreSQL: the only code that changes a status (lifecycle), claims, leases and
fencing (claiming), the named SQL registry (sql), throttles and health holds, the dispatcher seam, LISTEN/NOTIFY
wake-ups and traces."""
