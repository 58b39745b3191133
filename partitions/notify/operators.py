"""Telling the operators about something that has no job to hang a delivery on (a schedule that could not fire):
one e-mail to the operator addresses (`PARTITIONS_NOTIFY["email"]`) and a log line, sent after the change commits.
A mail server that is down costs a log line, never the duty that noticed the problem."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction

from partitions.core.limits import SUBJECT, clip
from partitions.notify.config import operator_addresses

log = logging.getLogger(__name__)


def operators_notify(subject: str, body: str) -> None:
    """Log `subject` as an error and e-mail it to the operators once the current transaction commits."""
    log.error("%s: %s", subject, body)
    transaction.on_commit(lambda: _send(subject, body))


def _send(subject: str, body: str) -> None:
    recipients = operator_addresses()
    if not recipients:
        return
    try:
        EmailMessage(clip(subject, SUBJECT), body, settings.DEFAULT_FROM_EMAIL, list(recipients)).send()
    except Exception:  # the operators' mail is a courtesy; the event row and the log line are the record
        log.exception("could not e-mail the operators about: %s", subject)
