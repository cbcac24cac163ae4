"""Server-side search of the conversation lists (`?q=`): what a query matches and how it is made
safe (no IO; queries.py turns it into SQL).

A conversation matches when the text, case-insensitively and as typed (a substring, no operators),
appears in its subject, its contact's address or name, or the text (its first 4,000 characters,
MESSAGE_TEXT_SEARCHED), sender address or sender name of one of its messages. `%`, `_`, `\\`,
quotes and every other character stand for themselves.

On PostgreSQL two trigram GIN indexes (pg_trgm, created by the migration) serve the ILIKE over
the two documents below; on SQLite (development, unit tests) the same condition is a plain LIKE
(case-insensitive for ASCII only). The documents' SQL is written once here: the indexes are built
on exactly these expressions, so the planner can match them.
"""

from __future__ import annotations

MAX_QUERY_LENGTH = 200
ESCAPE = "\\"

# the parts are joined with a newline, so that a query does not match across two fields (unless
# it contains a newline itself, which a search box does not send); `{t}` is "" in the index
# definitions and "<table>." in the queries (the same expression to the planner)
_CONVERSATION_DOCUMENT = ("(coalesce({t}subject, '') || chr(10) || coalesce({t}contact_email, '') || chr(10) "
                          "|| coalesce({t}contact_name, ''))")
# A message's text is searched in its first MESSAGE_TEXT_SEARCHED characters. The trigram index
# costs PostgreSQL CPU on every stored message in proportion to the text's distinct trigrams: over
# the bench corpus (11.7 KB of text on average) the full text cost 1.9 ms of backend CPU per
# insert more than no index, the first 4,000 characters 0.85 ms (bench/handler_bench.py, docs/
# benchmarks.md), and a hostile 1 MB text no longer costs a megabyte of trigrams. 4,000 characters
# hold what a person writes in an email; beyond them is mostly quoted history, which is searched
# in the earlier message it quotes. substr, not left(): SQLite has only substr.
MESSAGE_TEXT_SEARCHED = 4000
_MESSAGE_DOCUMENT = (f"(substr(coalesce({{t}}text, ''), 1, {MESSAGE_TEXT_SEARCHED}) || chr(10) "
                     "|| coalesce({t}sender ->> 'email', '') || chr(10) || coalesce({t}sender ->> 'name', ''))")
CONVERSATION_DOCUMENT_SQL = _CONVERSATION_DOCUMENT.format(t="")
MESSAGE_DOCUMENT_SQL = _MESSAGE_DOCUMENT.format(t="")
# the trigram indexes' elements (expression and operator class)
CONVERSATION_INDEX_SQL = f"{CONVERSATION_DOCUMENT_SQL} gin_trgm_ops"
MESSAGE_INDEX_SQL = f"{MESSAGE_DOCUMENT_SQL} gin_trgm_ops"


def conversation_document_sql(table: str = "conversations") -> str:
    return _CONVERSATION_DOCUMENT.format(t=f"{table}.")


def message_document_sql(table: str = "messages") -> str:
    return _MESSAGE_DOCUMENT.format(t=f"{table}.")

class QueryTooLong(ValueError):
    pass


def normalise_query(q: str | None) -> str | None:
    """The text to look for: None when there is nothing to look for (absent, empty, blanks);
    QueryTooLong beyond MAX_QUERY_LENGTH characters."""
    if q is None:
        return None
    if len(q) > MAX_QUERY_LENGTH:
        raise QueryTooLong(f"q is {len(q)} characters long; at most {MAX_QUERY_LENGTH}")
    q = q.strip()
    return q or None


def like_pattern(q: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching `q` literally anywhere in a text."""
    escaped = q.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"
