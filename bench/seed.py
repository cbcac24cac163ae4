"""Seed the services' own databases with R existing messages, directly in PostgreSQL
(INSERT … SELECT FROM generate_series: the server generates the rows), as if R emails had gone
through the pipeline over two years.

With C = R/4 conversations (4 messages each) and P = R/5 contacts; inboxes: the bench's `support`
inbox (60 % of the conversations) and 4 other inboxes (10 % each):

  ingest        intake R (status processed), outbox R published `message_received`
  conversations inboxes 5, channels 5, members 5, conversations C (70 % closed, 25 % open, 5 % spam),
                messages R (text 300–900 characters, 20 % with a small HTML part, 15 % with an
                attachment entry; messages 2–4 of a conversation carry In-Reply-To/References),
                known_contacts P, processed_events R + P, outbox R + C published
                (`message_added`, `conversation_created`)
  contacts      contacts P, contact_emails P, timeline_entries R, message_conversations R,
                processed_events 2R, outbox P + R published (`contact_created`, `timeline_entry_added`)

Published outbox envelopes are compact (a few hundred bytes: the relay never reads a published row
again; real `message_received` envelopes carry the text and HTML and are 10–100 times larger).

How: drop every index, unique key and foreign key; fill the tables, three PostgreSQL backends at
a time; build the indexes and keys again (one sorted build per index is far faster than a million
random-position inserts and a foreign-key check per row); VACUUM ANALYZE, so the planner has
statistics and autovacuum does not start in the middle of the measurement. The bench inbox row is
created with the key the conversations seeder looks up (`support`), so the seeded history and the
benchmark's mail share one inbox.
"""

from __future__ import annotations

import threading
import time

import psycopg2

SUPPORT_INBOX = "00000000-0000-4000-8000-000000000001"
INBOXES = [(SUPPORT_INBOX, "support", "Support", "support@mailroom.test")] + [
    (f"00000000-0000-4000-8000-00000000000{k}", f"team{k}", f"Team {k}", f"team{k}@mailroom.test") for k in range(2, 6)
]
TEXT = ("Hello team, I am writing about my order which has not arrived yet. The tracking page says the parcel "
        "left the warehouse last Monday but nothing has moved since. Could you please check with the courier "
        "and let me know when I can expect it? I also noticed that the invoice lists the wrong billing address, "
        "the street number should be 42 and not 24. If a replacement is needed please send it to the same "
        "address. Thanks a lot for your help, and kind regards from a patient customer. PS: the discount code "
        "from your newsletter did not apply at checkout, the total was charged in full. ") * 3

# -- SQL ----------------------------------------------------------------------------------------
# {nr} (messages), {nc} (conversations), {np} (contacts) and {txt} are filled in by _sql() with
# integers and a dollar-quoted constant: no bind parameters, so `%` is SQL's modulo. Message i
# (1..R) belongs to conversation ((i-1) % C) + 1; conversation c to inbox (c % 10 < 6: support,
# else team (c % 10 - 4)); its contact is (c % P) + 1. md5(...)::uuid gives stable, distinct ids.
# JSON is built by concatenation (json_build_object is several times slower).


def _t(i: str) -> str:
    """The time of the i-th of R events spread over the last two years."""
    return f"(now() - ({{nr}} - {i}) * (interval '730 days' / {{nr}}))"


def _conv_of(i: str) -> str:
    return f"((({i}) - 1) % {{nc}} + 1)"


def _inbox(c: str) -> str:
    return (f"(CASE WHEN ({c}) % 10 < 6 THEN '{SUPPORT_INBOX}' "
            f"ELSE '00000000-0000-4000-8000-00000000000' || (({c}) % 10 - 4)::text END)")


def _address(c: str) -> str:
    return (f"(CASE WHEN ({c}) % 10 < 6 THEN 'support@mailroom.test' "
            f"ELSE 'team' || (({c}) % 10 - 4)::text || '@mailroom.test' END)")


def _customer(c: str) -> str:
    return f"('customer' || (({c}) % {{np}} + 1) || '@customer' || (({c}) % 8) || '.example')"


def _envelope(source: str, event_type: str, data: str) -> str:
    """A compact CloudEvents envelope as JSON text; expects columns e (id), t (time), s (subject)."""
    return ("""('{"specversion":"1.0","id":"' || e || '","source":"mailroom/""" + source
            + """","type":"mailroom.""" + event_type + """.v1","time":"' || t || '","subject":"' || s"""
            + """ || '","datacontenttype":"application/json","data":{' || """ + data + """ || '}}')::json""")


_ADDED_DATA = ("""'"conversation_id":"' || s || '","message_id":"' || md5('msg' || i)::uuid::text"""
               """ || '","rfc_message_id":"seed-' || i || '@customer.example","direction":"in",'"""
               """ || '"subject":"Order has not arrived","spam":false'""")
_CREATED_DATA = """'"conversation_id":"' || s || '","subject":"Order has not arrived","status":"open","spam":false'"""
_RECEIVED_DATA = ("""'"intake_id":"' || s || '","channel_address":"support@mailroom.test","via":"smtp",'"""
                  """ || '"message_id":"seed-' || i || '@customer.example","subject":"Order has not arrived",'"""
                  """ || '"sender":{"name":"Customer","email":"customer' || i % {np} || '@customer.example"},'"""
                  """ || '"text":"' || substr({txt}, 1 + i % 300, 200 + i % 300) || '","html":null,'"""
                  """ || '"attachments":[],"flags":{"spam":false,"bounce":false,"loop":false,'"""
                  """ || '"auto_submitted":false}'""")
_CONTACT_DATA = ("""'"contact_id":"' || s || '","name":"Customer ' || k || '","emails":["customer' || k"""
                 """ || '@customer.example"],"created_from":"seed"'""")
_ENTRY_DATA = ("""'"entry_id":"' || md5('entry' || i)::uuid::text || '","contact_id":"' || s"""
               """ || '","direction":"in","message_id":"seed-' || i || '@customer.example",'"""
               """ || '"subject":"Order has not arrived"'""")

_INBOX_ROWS = (
    "INSERT INTO inboxes (id, key, name, created_at, updated_at) VALUES "
    + ", ".join(f"('{i}', '{k}', '{n}', now() - interval '3 years', now() - interval '3 years')"
                for i, k, n, _ in INBOXES) + ";"
    + " INSERT INTO channels (inbox_id, address, display_name, is_primary) VALUES "
    + ", ".join(f"('{i}', '{a}', '{n}', true)" for i, _, n, a in INBOXES) + ";"
    + " INSERT INTO members (inbox_id, user_id, email) VALUES "
    + ", ".join(f"('{i}', 'agent-{n}', 'agent{n}@mailroom.test')" for n, (i, *_rest) in enumerate(INBOXES, 1))
    + ";"
)

CONVERSATIONS_TABLES = {
    "inboxes": _INBOX_ROWS,
    "conversations": f"""
INSERT INTO conversations (id, inbox_id, subject, status, spam, reply_token, contact_email, contact_name,
    contact_id, message_count, snippet, created_at, last_message_at, closed_at)
SELECT md5('conv' || c)::uuid::text, {_inbox('c')}, 'Order #' || c || ' has not arrived',
    CASE WHEN c % 20 = 0 OR c % 4 = 1 THEN 'open' ELSE 'closed' END, c % 20 = 0,
    md5('token' || c), {_customer('c')}, 'Customer ' || (c % {{np}} + 1),
    md5('contact' || (c % {{np}} + 1))::uuid::text, 4, left({{txt}}, 200), {_t('c')}, {_t('(c + 3 * {nc})')},
    CASE WHEN c % 20 = 0 OR c % 4 = 1 THEN NULL ELSE {_t('(c + 3 * {nc})')} END
FROM generate_series(1, {{nc}}) AS c;
""",
    "messages": f"""
INSERT INTO messages (id, conversation_id, inbox_id, rfc_message_id, direction, intake_id, channel_address, via,
    subject, sender, attributed_to, "to", cc, reply_to, in_reply_to, "references", text, html, html_truncated,
    remote_images_blocked, snippet, size, full_message_url, attachments, forward, flags, date_header, received_at,
    created_at)
SELECT md5('msg' || i)::uuid::text, md5('conv' || cv)::uuid::text, {_inbox('cv')},
    'seed-' || i || '@customer' || (cv % 8) || '.example', 'in', intake, {_address('cv')}, 'smtp',
    CASE WHEN i > {{nc}} THEN 'Re: ' ELSE '' END || 'Order #' || cv || ' has not arrived',
    sender, sender, ('[{{"name":"Support","email":"' || {_address('cv')} || '"}}]')::json, '[]', '[]',
    parent, parent,
    substr({{txt}}, 1 + i % 300, 300 + i % 600) || ' (ref ' || i || ')',
    CASE WHEN i % 5 = 0 THEN '<div><p>' || substr({{txt}}, 1 + i % 200, 400) || '</p></div>' END, false, 0,
    substr({{txt}}, 1 + i % 300, 200), 1500 + i % 4000, '/api/ingest/messages/' || intake || '/raw',
    CASE WHEN i % 20 < 3 THEN ('[{{"filename":"invoice-' || i || '.pdf","content_type":"application/pdf","size":'
        || (20000 + i % 50000) || ',"sha256":"' || md5('att' || i) || md5('a' || i) || '","disposition":'
        || '"attachment","content_id":null,"url":"/api/ingest/messages/' || intake || '/attachments/x"}}]')::json
        ELSE '[]'::json END,
    NULL, '{{"auto_submitted":false,"bounce":false,"spam":false,"loop":false,"reasons":[]}}', NULL, t, t
FROM generate_series(1, {{nr}}) AS i,
     LATERAL (SELECT {_conv_of('i')} AS cv, md5('intake' || i)::uuid::text AS intake, {_t('i')} AS t) AS x,
     LATERAL (SELECT ('{{"name":"Customer ' || (cv % {{np}} + 1) || '","email":"' || {_customer('cv')} || '"}}')::json
                  AS sender,
                     CASE WHEN i > {{nc}}
                          THEN ('["seed-' || (i - {{nc}}) || '@customer' || (cv % 8) || '.example"]')::json
                          ELSE '[]'::json END AS parent) AS y;
""",
    "known_contacts": f"""
INSERT INTO known_contacts (email, contact_id)
SELECT {_customer('(k - 1)')}, md5('contact' || k)::uuid::text FROM generate_series(1, {{np}}) AS k
ON CONFLICT DO NOTHING;
""",
    "processed_events": f"""
INSERT INTO processed_events (source, event_id, handler, processed_at)
SELECT 'mailroom/ingest', md5('evt-received' || i)::uuid::text, 'handle_message_received', {_t('i')}
FROM generate_series(1, {{nr}}) AS i
UNION ALL
SELECT 'mailroom/contacts', md5('evt-contact' || k)::uuid::text, 'handle_contact_created', {_t('k')}
FROM generate_series(1, {{np}}) AS k;
""",
    "outbox": f"""
INSERT INTO outbox (event_id, event_type, envelope, created_at, published_at, attempts)
SELECT e, 'message_added', {_envelope('conversations', 'message_added', _ADDED_DATA)}, t, t, 1
FROM generate_series(1, {{nr}}) AS i,
     LATERAL (SELECT md5('evt-added' || i)::uuid::text AS e, {_t('i')} AS t,
              md5('conv' || {_conv_of('i')})::uuid::text AS s) AS x
UNION ALL
SELECT e, 'conversation_created', {_envelope('conversations', 'conversation_created', _CREATED_DATA)}, t, t, 1
FROM generate_series(1, {{nc}}) AS c,
     LATERAL (SELECT md5('evt-created' || c)::uuid::text AS e, {_t('c')} AS t, md5('conv' || c)::uuid::text AS s)
         AS x;
""",
}

INGEST_TABLES = {
    "intake": f"""
INSERT INTO intake (id, channel_address, reply_token, via, dedupe_key, blob_key, size, envelope_from, status, reason,
    attachments, received_at, processed_at)
SELECT md5('intake' || i)::uuid::text, {_address(_conv_of('i'))}, NULL, 'smtp',
    'seed-' || i || '@customer' || ({_conv_of('i')} % 8) || '.example', md5('blob' || i) || md5('b' || i),
    1000 + i % 4000, 'customer' || i % {{np}} || '@customer.example', 'processed', NULL, '[]', t,
    t + interval '150 milliseconds'
FROM generate_series(1, {{nr}}) AS i, LATERAL (SELECT {_t('i')} AS t) AS x;
""",
    "outbox": f"""
INSERT INTO outbox (event_id, event_type, envelope, created_at, published_at, attempts)
SELECT e, 'message_received', {_envelope('ingest', 'message_received', _RECEIVED_DATA)}, t, t, 1
FROM generate_series(1, {{nr}}) AS i,
     LATERAL (SELECT md5('evt-received' || i)::uuid::text AS e, {_t('i')} AS t,
              md5('intake' || i)::uuid::text AS s) AS x;
""",
}

CONTACTS_TABLES = {
    "contacts": f"""
INSERT INTO contacts (id, name, created_at, created_from)
SELECT md5('contact' || k)::uuid::text, 'Customer ' || k, {_t('k')}, md5('evt-received' || k)::uuid::text
FROM generate_series(1, {{np}}) AS k;
INSERT INTO contact_emails (contact_id, email)
SELECT md5('contact' || k)::uuid::text, {_customer('(k - 1)')} FROM generate_series(1, {{np}}) AS k;
""",
    "timeline_entries": f"""
INSERT INTO timeline_entries (id, contact_id, direction, rfc_message_id, intake_id, channel_address, subject, snippet,
    attachments, forwarded_by, occurred_at)
SELECT md5('entry' || i)::uuid::text, md5('contact' || ({_conv_of('i')} % {{np}} + 1))::uuid::text,
    'in', 'seed-' || i || '@customer.example', md5('intake' || i)::uuid::text,
    {_address(_conv_of('i'))}, 'Order has not arrived', substr({{txt}}, 1 + i % 300, 200), '[]', NULL, {_t('i')}
FROM generate_series(1, {{nr}}) AS i;
""",
    "message_conversations": f"""
INSERT INTO message_conversations (intake_id, conversation_id)
SELECT md5('intake' || i)::uuid::text, md5('conv' || {_conv_of('i')})::uuid::text
FROM generate_series(1, {{nr}}) AS i;
""",
    "processed_events": f"""
INSERT INTO processed_events (source, event_id, handler, processed_at)
SELECT 'mailroom/ingest', md5('evt-received' || i)::uuid::text, 'handle_message_received', {_t('i')}
FROM generate_series(1, {{nr}}) AS i
UNION ALL
SELECT 'mailroom/conversations', md5('evt-added' || i)::uuid::text, 'handle_message_added', {_t('i')}
FROM generate_series(1, {{nr}}) AS i;
""",
    "outbox": f"""
INSERT INTO outbox (event_id, event_type, envelope, created_at, published_at, attempts)
SELECT e, 'contact_created', {_envelope('contacts', 'contact_created', _CONTACT_DATA)}, t, t, 1
FROM generate_series(1, {{np}}) AS k,
     LATERAL (SELECT md5('evt-contact' || k)::uuid::text AS e, {_t('k')} AS t, md5('contact' || k)::uuid::text AS s)
         AS x
UNION ALL
SELECT e, 'timeline_entry_added', {_envelope('contacts', 'timeline_entry_added', _ENTRY_DATA)}, t, t, 1
FROM generate_series(1, {{nr}}) AS i,
     LATERAL (SELECT md5('evt-entry' || i)::uuid::text AS e, {_t('i')} AS t,
              md5('contact' || (i % {{np}} + 1))::uuid::text AS s) AS x;
""",
}

TABLES = {"conversations": CONVERSATIONS_TABLES, "ingest": INGEST_TABLES, "contacts": CONTACTS_TABLES}
WORKERS = 3  # PostgreSQL backends at once (2 cores; a third keeps both busy through I/O waits)

_CONSTRAINTS = """
SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f') AND c.conrelid::regclass::text <> 'alembic_version'
"""
_INDEXES = """
SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = 'public' AND i.tablename <> 'alembic_version'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _sql(template: str, rows: int) -> str:
    return (template.replace("{nr}", str(rows)).replace("{nc}", str(max(rows // 4, 1)))
            .replace("{np}", str(max(rows // 5, 1))).replace("{txt}", f"$txt${TEXT}$txt$"))


def _run_jobs(jobs: list[tuple[str, str, list[str]]], timings: dict) -> None:
    """jobs: (database url, label, statements); each job in its own connection, WORKERS at once."""
    pending = list(jobs)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not pending or errors:
                    return
                url, label, statements = pending.pop(0)
            began = time.monotonic()
            try:
                connection = psycopg2.connect(_dsn(url))
                connection.autocommit = True
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SET synchronous_commit = off")
                        cursor.execute("SET maintenance_work_mem = '256MB'")
                        for statement in statements:
                            cursor.execute(statement)
                finally:
                    connection.close()
            except BaseException as exc:  # re-raised below
                errors.append(exc)
                return
            timings[label] = round(time.monotonic() - began, 1)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _schema(url: str) -> tuple[list, list]:
    connection = psycopg2.connect(_dsn(url))
    try:
        with connection.cursor() as cursor:
            cursor.execute(_CONSTRAINTS)
            constraints = cursor.fetchall()
            cursor.execute(_INDEXES)
            indexes = cursor.fetchall()
    finally:
        connection.close()
    return constraints, indexes


def seed(database_urls: dict[str, str], rows: int) -> dict:
    """Seed the ingest, contacts and conversations databases (already migrated) with `rows` messages."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    drops, fills, builds, foreign_keys, vacuums = [], [], [], [], []
    for service, tables in TABLES.items():
        url = database_urls[service]
        constraints, indexes = _schema(url)
        drop = [f'ALTER TABLE {t} DROP CONSTRAINT "{n}"' for t, n, _d, kind in constraints if kind == "f"]
        drop += [f'ALTER TABLE {t} DROP CONSTRAINT "{n}"' for t, n, _d, kind in constraints if kind != "f"]
        drop += [f'DROP INDEX "{n}"' for _t, n, _d in indexes]
        drops.append((url, f"{service}: drop keys and indexes", drop))
        for table, template in tables.items():
            fills.append((url, f"{service}.{table}", [_sql(template, rows)]))
        for table in sorted({t for t, *_ in constraints} | {t for t, *_ in indexes}):
            build = [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, kind in constraints
                     if kind != "f" and t == table]
            build += [d for t, _n, d in indexes if t == table]
            if build:
                builds.append((url, f"{service}.{table}: keys and indexes", build))
        foreign_keys.append((url, f"{service}: foreign keys",
                             [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, kind in constraints
                              if kind == "f"]))
        vacuums.append((url, f"{service}: vacuum analyze", ["VACUUM (ANALYZE)"]))
    biggest_first = ["conversations.messages", "contacts.outbox", "ingest.outbox", "conversations.outbox",
                     "contacts.processed_events", "contacts.timeline_entries"]
    fills.sort(key=lambda job: biggest_first.index(job[1]) if job[1] in biggest_first else len(biggest_first))
    for phase in (drops, fills, builds, foreign_keys, vacuums):
        _run_jobs(phase, timings)
    report = {"seconds": round(time.monotonic() - started, 1), "rows": rows, "timings": timings, "databases": {}}
    for service, url in database_urls.items():
        connection = psycopg2.connect(_dsn(url))
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE n_live_tup > 0"
                               " ORDER BY relname")
                counts = dict(cursor.fetchall())
                cursor.execute("SELECT pg_database_size(current_database())")
                size = cursor.fetchone()[0]
        finally:
            connection.close()
        report["databases"][service] = {"rows": counts, "mb": round(size / 1e6)}
    return report
