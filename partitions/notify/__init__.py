"""Step notifications: job events become deliveries in a durable outbox, sent at least once by django-q2.

`config` (which channels a job notifies), `relay` (job events -> deliveries, idempotent), `channels`
(e-mail and signed webhooks), `outbox` (send what is due, in order per job and channel, with backoff).
"""
