"""DATABASE_URL to Django's DATABASES entry and back, libpq multi-host URLs included.

A failover-ready URL lists every server and asks for the one that accepts writes, and libpq (psycopg) tries
them in order on every new connection:

    postgres://app@db1:5432,db2:5432/app?target_session_attrs=read-write
    postgres://app@/app?host=/run/pg-a,/run/pg-b&target_session_attrs=read-write   (unix sockets)

django-environ keeps such a URL as libpq wants it: HOST "db1,db2" and PORT "5432,5432" (or OPTIONS["host"] for
sockets) plus OPTIONS["target_session_attrs"], which Django's psycopg backend passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import environ
from django.core.exceptions import ImproperlyConfigured

#: target_session_attrs values that land on the server that takes writes (libpq's default, "any", does not).
WRITABLE_SESSIONS = frozenset({"read-write", "primary"})


def hosts_of(settings_dict: Mapping[str, Any]) -> list[str]:
    """The servers a DATABASES entry names, in libpq's order (host names or unix socket folders)."""
    hosts = settings_dict.get("HOST") or settings_dict.get("OPTIONS", {}).get("host", "")
    return [host for host in hosts.split(",") if host]


def database_from_url(url: str) -> dict[str, Any]:
    """The DATABASES entry for DATABASE_URL; several hosts need target_session_attrs=read-write (or primary),
    else libpq would settle on the first server that answers, a standby included."""
    database = environ.Env.db_url_config(url)
    attrs = database.get("OPTIONS", {}).get("target_session_attrs")
    if len(hosts_of(database)) > 1 and attrs not in WRITABLE_SESSIONS:
        raise ImproperlyConfigured(
            f"DATABASE_URL lists several hosts but target_session_attrs is {attrs or 'unset'}: add "
            "?target_session_attrs=read-write so every connection goes to the server that accepts writes.")
    return database


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A DATABASE_URL for a Django database's settings (TCP, unix socket folders, several hosts), for
    subprocesses."""
    hosts, options = hosts_of(settings_dict), settings_dict.get("OPTIONS", {})
    auth = quote(settings_dict["USER"] or "", safe="")
    if settings_dict.get("PASSWORD"):
        auth += f":{quote(settings_dict['PASSWORD'], safe='')}"
    query = {"target_session_attrs": options["target_session_attrs"]} if "target_session_attrs" in options else {}
    if hosts and hosts[0].startswith("/"):
        query = {"host": ",".join(hosts), **query}
        netloc = ""
    else:
        ports = str(settings_dict.get("PORT") or "").split(",")
        netloc = ",".join(f"{host}:{port}" if port else host
                          for host, port in zip(hosts, ports * len(hosts) if len(ports) == 1 else ports, strict=True))
    suffix = f"?{urlencode(query, safe='/,')}" if query else ""
    return f"postgres://{auth}@{netloc}/{settings_dict['NAME']}{suffix}"
