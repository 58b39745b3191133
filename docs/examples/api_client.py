#!/usr/bin/env python3
"""Start a job through the JSON API, wait for it to end, print its summary. Standard library only.

    export PARTITIONS_API_TOKEN=pt_…        # an API token from the admin (Authentication → API tokens)
    python docs/examples/api_client.py --url http://localhost:8000 billing.send_invoices --param period=2026-11

Exits 0 when the job succeeded, 1 when it ended otherwise, 2 when the API refused the request (its problem
detail and each bad field are printed). The start carries an Idempotency-Key, so the script retries a start whose
answer was lost without starting a second job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

ENDED = {"succeeded", "failed", "cancelled"}


class Refused(Exception):
    """The API answered with a problem (RFC 9457)."""

    def __init__(self, problem: dict):
        self.problem = problem
        fields = "".join(f"\n  {name}: {message}" for name, message in (problem.get("errors") or {}).items())
        super().__init__(f"{problem.get('status')} {problem.get('title')}: {problem.get('detail')}{fields}")


def call(base: str, token: str, method: str, path: str, body: dict | None = None, headers: dict | None = None,
         tries: int = 3) -> dict:
    """One request to the API, as JSON; a lost connection is tried again (the start is idempotent)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}/api/v1{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json",
        **(headers or {})})
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise Refused(json.loads(error.read() or b"{}")) from None
        except (urllib.error.URLError, TimeoutError):
            if attempt == tries - 1:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def start(base: str, token: str, type_name: str, params: dict) -> dict:
    """Start a job of `type_name` (one job, however often the request is retried)."""
    return call(base, token, "POST", "/jobs", {"type": type_name, "params": params},
                headers={"Idempotency-Key": str(uuid.uuid4())})


def wait(base: str, token: str, job_id: int, interval: float) -> dict:
    """Poll the job's status until it ends; print its progress as it goes."""
    while True:
        job = call(base, token, "GET", f"/jobs/{job_id}")
        eta = "" if job["eta_seconds"] is None else f", ETA {job['eta_seconds']:.0f}s"
        print(f"job {job_id} {job['status']}: {job['percent']:.1f}%{eta}", file=sys.stderr)
        if job["status"] in ENDED:
            return job
        time.sleep(interval)


def summary(job: dict) -> str:
    """The job's outcome in one line."""
    handled = job["items_done"] + job["items_failed"] + job["items_skipped"]
    return (f"job {job['id']} {job['status']}: {handled}/{job['items_total']} items handled, "
            f"{job['items_failed']} failed" + (f" ({job['error']})" if job["error"] else ""))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, start, wait and print the summary; the exit code says how the job ended."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("type_name")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--url", default=os.environ.get("PARTITIONS_API_URL", "http://localhost:8000"))
    parser.add_argument("--token", default=os.environ.get("PARTITIONS_API_TOKEN"))
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two polls")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give --token or set PARTITIONS_API_TOKEN")
    params = dict(pair.split("=", 1) for pair in args.param)
    try:
        job = start(args.url, args.token, args.type_name, params)
        print(f"job {job['id']} {'started' if job['created'] else 'was already started'}", file=sys.stderr)
        job = wait(args.url, args.token, job["id"], args.interval)
    except Refused as refused:
        print(refused, file=sys.stderr)
        return 2
    print(summary(job))
    return 0 if job["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
