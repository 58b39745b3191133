"""Fast demo data: one server-side `INSERT … SELECT … FROM generate_series(…)` per table.

Nothing crosses the wire row by row, so a million subscriptions take seconds.
Ids come from each table's own sequence inside the statement, which makes SKUs
and e-mails unique even when seeding is run again without a reset.
"""

from django.db import connection, transaction

from opsapp.billing.models import Customer, Event, Invoice, Product, Subscription

# Subscriptions share a created_at in groups of this size, all in the same
# product, so keyset pagination must break ties on id (as it does in real data).
ROWS_PER_TIMESTAMP = 7
EVENT_KINDS = ["subscription.renewed", "invoice.issued", "customer.updated"]
_SEEDED = [(Product, "products"), (Customer, "customers"), (Subscription, "subscriptions"), (Event, "events")]

_PRODUCTS_SQL = """
WITH ins AS (
    INSERT INTO opsapp_product (id, sku, name, version, updated_at)
    SELECT s.id,
           'SKU-' || lpad(s.id::text, 6, '0'),
           'Product ' || s.id,
           CASE WHEN s.changed THEN 2 ELSE 1 END,
           CASE WHEN s.changed THEN now() ELSE now() - interval '30 days' END
    FROM (
        -- Spreads the changed products evenly: exactly floor(n * fraction) of them.
        SELECT nextval(pg_get_serial_sequence('opsapp_product', 'id')) AS id,
               floor(g * %(fraction)s::float8) > floor((g - 1) * %(fraction)s::float8) AS changed
        FROM generate_series(1, %(n)s) AS g
    ) AS s
    RETURNING id
)
SELECT count(*), min(id), max(id) FROM ins
"""

_CUSTOMERS_SQL = """
WITH ins AS (
    INSERT INTO opsapp_customer (id, name, email)
    SELECT s.id, 'Customer ' || s.id, 'customer' || s.id || '@example.com'
    FROM (
        SELECT nextval(pg_get_serial_sequence('opsapp_customer', 'id')) AS id FROM generate_series(1, %(n)s)
    ) AS s
    RETURNING id
)
SELECT count(*), min(id), max(id) FROM ins
"""

# Products round-robin per timestamp group, customers round-robin per row.
# The id arrays hold the rows seeded just before, whatever their ids are.
_SUBSCRIPTIONS_SQL = """
INSERT INTO opsapp_subscription (product_id, customer_id, created_at, product_version, status)
SELECT p.ids[1 + (g / %(per_ts)s) %% p.n],
       c.ids[1 + g %% c.n],
       timestamptz '2024-01-01 00:00:00+00' + (g / %(per_ts)s) * interval '1 second',
       1,
       'active'
FROM generate_series(0, %(n)s - 1) AS g,
     (SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n
      FROM opsapp_product WHERE id BETWEEN %(p_lo)s AND %(p_hi)s) AS p,
     (SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n
      FROM opsapp_customer WHERE id BETWEEN %(c_lo)s AND %(c_hi)s) AS c
"""

_EVENTS_SQL = """
INSERT INTO opsapp_event (kind, payload, status, sent_at, ack_id, send_count)
SELECT (%(kinds)s::text[])[1 + g %% cardinality(%(kinds)s::text[])],
       jsonb_build_object('seq', g),
       'pending', NULL, '', 0
FROM generate_series(0, %(n)s - 1) AS g
"""


def _validate(products: int, subscriptions: int, customers: int, events: int, stale_fraction: float) -> None:
    counts = {"products": products, "subscriptions": subscriptions, "customers": customers, "events": events}
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if not 0 <= stale_fraction <= 1:
        raise ValueError(f"stale_fraction must be between 0 and 1, got {stale_fraction}")
    if subscriptions > 0 and products < 1:
        raise ValueError("subscriptions need at least one product: pass products >= 1")
    if subscriptions > 0 and customers < 1:
        raise ValueError("subscriptions need at least one customer: pass customers >= 1")


def seed_demo(
    *, products: int, subscriptions: int, customers: int, events: int, stale_fraction: float = 0.5
) -> dict[str, int]:
    """Insert demo rows in one transaction and return how many went into each table.

    About `stale_fraction` of the products "changed recently" (version 2, updated
    now); the rest are version 1, updated 30 days ago. Every subscription is at
    product version 1, so those of changed products need migrating. Subscriptions
    share created_at timestamps in groups of ROWS_PER_TIMESTAMP. Events are pending.
    Raises ValueError, before writing anything, on invalid numbers.
    """
    _validate(products, subscriptions, customers, events, stale_fraction)
    result = {"products": 0, "customers": 0, "subscriptions": 0, "events": 0}
    with transaction.atomic(), connection.cursor() as cursor:
        p_lo = p_hi = c_lo = c_hi = 0
        if products:
            cursor.execute(_PRODUCTS_SQL, {"n": products, "fraction": float(stale_fraction)})
            result["products"], p_lo, p_hi = cursor.fetchone()
        if customers:
            cursor.execute(_CUSTOMERS_SQL, {"n": customers})
            result["customers"], c_lo, c_hi = cursor.fetchone()
        if subscriptions:
            params = {"n": subscriptions, "per_ts": ROWS_PER_TIMESTAMP, "p_lo": p_lo, "p_hi": p_hi}
            cursor.execute(_SUBSCRIPTIONS_SQL, {**params, "c_lo": c_lo, "c_hi": c_hi})
            result["subscriptions"] = cursor.rowcount
        if events:
            cursor.execute(_EVENTS_SQL, {"n": events, "kinds": EVENT_KINDS})
            result["events"] = cursor.rowcount
        # Fresh statistics, so the planner uses the indexes for the first split right away.
        tables = [model._meta.db_table for model, key in _SEEDED if result[key]]
        if tables:
            cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))
    return result


def reset_demo() -> None:
    """Delete every demo row (all five tables) and restart their id sequences."""
    tables = [m._meta.db_table for m in (Subscription, Invoice, Event, Customer, Product)]
    with transaction.atomic(), connection.cursor() as cursor:
        # TRUNCATE refuses while deferred FK checks of earlier inserts in this transaction are
        # pending: run them now (and defer again), as Django's loaddata does.
        connection.check_constraints()
        cursor.execute(
            "TRUNCATE " + ", ".join(connection.ops.quote_name(t) for t in tables) + " RESTART IDENTITY CASCADE"
        )
