"""`bench io`: events that each wait ~20 ms for a broker ack (`billing.dispatch_events`), P processes x C in flight.

The baseline is the ideal: items x ack / (P x C), what perfect overlap would take. Efficiency = ideal / wall.
"""

from __future__ import annotations

from opsapp.bench import harness
from opsapp.billing.models import Event
from opsapp.billing.seeding import seed_demo

ACK_MS = 20


def run(opts: harness.Options) -> harness.Result:
    items, processes, in_flight = opts.pick(default=10_000, quick=400), opts.workers, opts.concurrency
    result = harness.Result("io", params={"items": items, "ack_ms": ACK_MS, "processes": processes,
                                          "in_flight_per_process": in_flight})
    seed_demo(products=0, subscriptions=0, customers=0, events=items)
    with harness.engine_for_bench():
        # One bucket per process: equal shares, no tail where one process idles while another finishes.
        job, _ = harness.planned_job("billing.dispatch_events",
                                     {"buckets": processes, "confirm_ms": ACK_MS, "concurrency": in_flight})
        opts.log(f"io: {items} events x {ACK_MS} ms, {processes} processes x {in_flight} in flight")
        wall, _ = harness.run_workers(processes, harness.drain_job, job.pk)
    sent = Event.objects.filter(status=Event.Status.SENT, send_count=1).count()
    if sent != items:
        raise harness.BenchError(f"io: {sent} of {items} events sent exactly once")
    ideal_seconds = items * ACK_MS / 1000 / (processes * in_flight)
    ideal = result.baseline("ideal_s", "ideal wall (perfect overlap)", ideal_seconds, "s")
    result.figure("wall_s", "wall", wall, "s", vs=(ideal,))
    result.figure("efficiency", "efficiency (ideal / wall)", ideal_seconds / wall, "")
    result.figure("rate", "throughput", items / wall, "items/s")
    result.checks["sent_exactly_once"] = sent
    return result
