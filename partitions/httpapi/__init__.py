"""The JSON API for automation, under `/api/v1/` (`site.api`, mounted in opsapp/urls.py): job types, jobs (start
with dry run, sample and Idempotency-Key; list, status, partitions, events, failures; pause, resume, cancel,
retry, throttle, set, skip) and schedules, with an OpenAPI 3.1 schema at `/api/v1/openapi.json`.

Why django-ninja: the bodies are pydantic models, so one declaration validates a request, validates and
serializes a response, and writes the OpenAPI 3.1 schema (natively: drf-spectacular writes 3.0, and DRF would
add serializers, viewsets and a second permission system beside `partitions.permissions`). It is small, runs
on Django 6.1 and lets every error be our problem+json (`problems`). The endpoints stay thin: each calls the
service the admin and the CLI call, with the acting user, so permissions, validation and audit are theirs.

Modules: `site` (the NinjaAPI, its auth and its schema), `auth` (bearer tokens and the session with CSRF),
`tokens` (made, hashed, revoked), `jobs`, `schedules`, `schemas` (the bodies), `paramschema` (a Params form as
JSON Schema), `problems` (RFC 9457 errors).
"""
