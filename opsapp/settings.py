"""Settings, 12-factor: everything that differs between deployments comes from the environment.

A `.env` file next to manage.py (or the file named by ENV_FILE) is read if present;
real environment variables win over it. See `.env.example` for every variable.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from opsapp import devdb
from partitions import conf as engine_conf

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env "
            "(or set DEBUG=true for a throwaway development key)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "opsapp.admin_site.ConsoleAdminConfig",  # django.contrib.admin, with the console's index order
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "partitions",
    "opsapp",  # the project itself: devdb and runstack commands
    "opsapp.billing",
    "opsapp.bench",  # `manage.py bench`
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "opsapp.middleware.RejectNulBytes",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "opsapp.urls"
WSGI_APPLICATION = "opsapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # csp_nonce for {% csp_nonce_attr %}
            ],
        },
    },
]

# Database: DATABASE_URL, or the embedded PostgreSQL on a unix socket (see opsapp/devdb.py).
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    DATABASES = {"default": devdb.database_settings()}
# Workers and the django-q2 ORM broker query constantly: keep connections open
# (reconnecting per call costs ~20x throughput) and health-check them on reuse.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=300))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# DATABASE_POOLING=transaction: DATABASE_URL points at PgBouncer in transaction-pooling mode, where a client
# keeps a server connection only for one transaction. Nothing may then live across transactions: no
# server-side (WITH HOLD) cursors for .iterator(), and no prepared statements (Django's psycopg default, kept
# explicit here). The engine's fast dead-worker detection goes off too (PARTITIONS_DETECT_DEAD_BACKENDS below).
DATABASE_POOLING = env.str("DATABASE_POOLING", default="")
if DATABASE_POOLING not in {"", "transaction"}:
    raise ImproperlyConfigured(f"DATABASE_POOLING must be empty or 'transaction', not {DATABASE_POOLING!r}.")
if DATABASE_POOLING:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
if test_name := env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": test_name}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    # A shared cache across hosts: django-q2's qinfo/qmonitor read cluster stats from it.
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Django 6.1 mailers; EMAIL_BACKEND picks the backend (console, filebased, locmem, smtp). SMTP unless DEBUG.
_DEFAULT_MAIL = f"django.core.mail.backends.{'console' if DEBUG else 'smtp'}.EmailBackend"
MAILERS = {"default": {"BACKEND": env.str("EMAIL_BACKEND", default=_DEFAULT_MAIL)}}
# The folder only for the filebased backend: the others refuse unknown options, so an EMAIL_FILE_PATH left in
# .env must not break an EMAIL_BACKEND overridden from the environment (locmem, smtp). Relative to the project.
if MAILERS["default"]["BACKEND"].endswith(".filebased.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {"file_path": str(BASE_DIR / env.str("EMAIL_FILE_PATH", default="var/mail"))}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@example.com")
OPS_NOTIFY_EMAILS = env.list("OPS_NOTIFY_EMAILS", default=["ops@example.com"])

# Security: secure by default; SECURE_SSL_REDIRECT etc. assume TLS is terminated in front.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy: our own origin only (images, fonts and fetch() fall back to default-src; nothing
# uses data: URIs), and no inline code or style except elements carrying the per-response nonce: the admin's
# templates and ours mark every <script>, <style> and stylesheet with it. Charts and progress bars are inline
# SVG drawn with attributes and classes, never style attributes.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
# LOG_FORMAT=json: one JSON object per line (python-json-logger), with the engine's job, partition,
# lease_token and worker fields on every line (null where they do not apply); plain text by default.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
_LOG_LINE = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"engine": {"()": "partitions.core.logs.EngineContext"}},
    "formatters": {
        "plain": {"format": _LOG_LINE},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "format": f"{_LOG_LINE} %(job)s %(partition)s %(lease_token)s %(worker)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["engine"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Engine: every PARTITIONS_* setting, read from the environment by its default's type; the defaults are
# partitions/conf.py's DEFAULTS (one table), except the few below that depend on how the database is reached.
# 0 turns a health check off and keeps history forever (partitions.conf.OFF_WHEN_ZERO). JSON values
# (PARTITIONS_NOTIFY) are one line; lists (PARTITIONS_JOB_MODULES) are comma-separated.
_ENGINE_ENV = {bool: env.bool, int: env.int, float: env.float, str: env.str, dict: env.json, list: env.list}
_ENGINE_DEFAULTS = {
    **engine_conf.DEFAULTS,
    # Off behind a transaction-mode pooler (PgBouncer): a pooled backend does not belong to one worker.
    "DETECT_DEAD_BACKENDS": not DATABASE_POOLING,
    # Polling behind a transaction pooler (no LISTEN session there) unless the LISTEN connection alone goes
    # straight to PostgreSQL (PARTITIONS_WAKEUP_LISTEN_URL).
    "WAKEUPS": "poll" if DATABASE_POOLING and not env.str("PARTITIONS_WAKEUP_LISTEN_URL", default="") else "listen",
}
for _name, _default in _ENGINE_DEFAULTS.items():
    globals()[f"PARTITIONS_{_name}"] = _ENGINE_ENV[type(_default)](f"PARTITIONS_{_name}", default=_default)
if PARTITIONS_WAKEUPS not in {"listen", "poll"}:  # noqa: F821 - set by the loop above
    raise ImproperlyConfigured(f"PARTITIONS_WAKEUPS must be 'listen' or 'poll', not {PARTITIONS_WAKEUPS!r}.")  # noqa: F821

# /metrics: with a token, scrapers send `Authorization: Bearer <token>`; without one, staff sessions only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# django-q2 on the ORM broker (the default database). Every host must share
# SECRET_KEY (task payloads are signed) and the cluster name.
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="opsapp"),
    "orm": "default",
    # Worker processes per qcluster; more machines = more qcluster processes.
    "workers": env.int("Q_WORKERS", default=2),
    # Tasks a busy cluster's pusher may hold back (plus one it blocks on): 1, so drains stay in the broker
    # for idle clusters (the engine keeps PARTITIONS_SPARE_DRAINS waiting there; see
    # docs/explanation/work-distribution.md).
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=1),
    # Seconds a task may run before it is killed; must exceed the drain budget.
    "timeout": env.int("Q_TIMEOUT", default=90),
    # The ORM broker re-delivers a task not acked within `retry` seconds, counted
    # from prefetch: must exceed (1 + ceil((queue_limit+1)/workers)) * (timeout + 3).
    "retry": env.int("Q_RETRY", default=400),
    # Re-deliveries are harmless (tasks are idempotent; partitions keep their own
    # attempt counters), so let django-q2 try once and rely on `tick` to top up.
    "max_attempts": 1,
    # Ack failed tasks so the broker does not loop on them; failures live in our tables.
    "ack_failures": True,
    # Restart a worker process after this many tasks to bound memory growth.
    "recycle": 500,
    # Keep the last N successful task results in django_q_success (-1 = none).
    "save_limit": 1000,
    # The ORM broker, woken by NOTIFY (partitions.engine.wakeups): an idle cluster waits on one LISTEN connection.
    "broker_class": env.str("Q_BROKER_CLASS", default="partitions.tasks.WakeupBroker") or None,
    # Seconds between two looks at the queue when polling (PARTITIONS_WAKEUPS=poll, behind PgBouncer); with
    # LISTEN the pusher looks when notified and every PARTITIONS_WAKEUP_SAFETY_SECONDS.
    "poll": env.float("Q_POLL", default=0.2),
    "catch_up": False,
    "label": "Django Q2",
}
