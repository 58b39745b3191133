"""LOG_FORMAT=json: every line a JSON object; engine lines carry job, partition, lease_token and worker."""

import io
import json
import logging

import pytest
from django.conf import settings

from partitions.core.logs import EngineContext, log_context
from partitions.models import Partition, SubJob
from tests.support import finished, started_job


def test_plain_text_is_the_default_and_json_is_opt_in():
    assert settings.LOG_FORMAT == "plain"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["engine"]


def test_the_context_filter_fills_every_field_and_a_records_own_extra_wins():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EngineContext())
    handler.setFormatter(logging.Formatter("%(job)s %(partition)s %(lease_token)s %(worker)s %(message)s"))
    logger = logging.getLogger("tests.logs.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with log_context(worker="w1"), log_context(job=7, partition=70, lease_token=3):
            logger.warning("inside")
            logger.warning("own", extra={"partition": 71})
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "None None None None outside", "7 70 3 w1 inside", "7 71 3 w1 own", "None None None None after"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_json_logging_cluster_writes_only_json_and_names_each_partition_on_worker_and_item_lines(clusters):
    (cluster,) = clusters(1, LOG_FORMAT="json")
    job = started_job("tests.items_logged", {"count": 60, "chunk_size": 20})
    job = finished(job, [cluster])
    assert job.status == "succeeded", job.error
    cluster.stop()
    lines = [json.loads(line) for line in cluster.log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message", "job", "partition", "lease_token", "worker"} <= set(line)
               for line in lines)
    tokens = dict(Partition.objects.filter(job=job).values_list("pk", "lease_token"))
    outcomes = [line for line in lines if line["logger"] == "partitions.worker.outcomes"]
    assert {line["partition"] for line in outcomes} == set(tokens)
    assert all(line["job"] == job.pk and line["lease_token"] == tokens[line["partition"]]
               and line["worker"].count(":") == 2 for line in outcomes)
    partition_of = dict(SubJob.objects.filter(job=job).values_list("key", "partition_id"))
    items = [line for line in lines if line["logger"] == "tests.jobtypes"]
    assert len(items) == 60
    assert all(line["partition"] == partition_of[line["message"].removeprefix("processing ")]
               and line["job"] == job.pk and line["worker"] for line in items), "item threads keep the context"
