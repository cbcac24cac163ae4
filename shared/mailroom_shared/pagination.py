"""Keyset pagination, newest first, for every list of the HTTP API: the opaque cursor is the
(time, id) of the last item returned, so a page never skips or repeats a row while rows are added."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_

from mailroom_shared.db import aware
from mailroom_shared.http import HttpError, encode_cursor


def newest_first(query, time_column, id_column, cursor: dict | None, limit: int):
    """`query` ordered newest first, after `cursor`, one row more than `limit` (to know if there is more)."""
    if cursor is not None:
        try:
            at = aware(dt.datetime.fromisoformat(str(cursor.get("at"))))
        except ValueError as exc:
            raise HttpError("invalid cursor") from exc
        last_id = cursor.get("id")
        if not isinstance(last_id, str):
            raise HttpError("invalid cursor")
        query = query.where(or_(time_column < at, and_(time_column == at, id_column < last_id)))
    return query.order_by(time_column.desc(), id_column.desc()).limit(limit + 1)


def next_cursor(rows: list, limit: int, time_of, id_of=lambda row: row.id) -> str | None:
    """The cursor after the last of `limit` rows, or None when `rows` (limit + 1 fetched) is the end."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor({"at": aware(time_of(last)).isoformat(), "id": id_of(last)})
