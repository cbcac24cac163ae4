"""get_or_404 and the shared HTTP errors as JSON answers."""

import json

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailroom_shared.db import Database, new_metadata
from mailroom_shared.http import NotFound, ServiceUnavailable, get_or_404, json_endpoint


class Base(DeclarativeBase):
    metadata = new_metadata()


class Widget(Base):
    __tablename__ = "widget"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'http.db'}")
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        session.add(Widget(id="w1"))
    yield database
    database.dispose()


def test_get_or_404_returns_what_exists(database):
    with database.transaction() as session:
        assert get_or_404(session, Widget, "w1", "widget").id == "w1"


def test_get_or_404_raises_not_found_naming_what_was_asked_for(database):
    with database.transaction() as session:
        with pytest.raises(NotFound, match="^no gadget w2$"):
            get_or_404(session, Widget, "w2", "gadget")
        with pytest.raises(NotFound, match="^no widget w3$"):  # by default, the model's name
            get_or_404(session, Widget, "w3")


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotFound("no widget w2"), 404, "not_found"), (ServiceUnavailable("blobs down"), 503, "service_unavailable"),
])
def test_a_shared_error_is_a_clear_json_answer(error, status, code):
    @json_endpoint
    def route(self, request):
        raise error

    response = route(None, None)
    assert response.status_code == status
    assert json.loads(response.get_data()) == {"error": {"code": code, "message": str(error)}}


def test_a_schema_instance_is_reused_per_class_and_options_and_keeps_nothing_between_calls():
    from marshmallow import EXCLUDE, Schema, ValidationError, fields

    from mailroom_shared.http import schema_instance

    class Body(Schema):
        name = fields.String(required=True)
        tags = fields.List(fields.String(), load_default=list)

    assert schema_instance(Body) is schema_instance(Body)
    assert schema_instance(Body, unknown=EXCLUDE) is not schema_instance(Body)
    assert schema_instance(Body, unknown=EXCLUDE).load({"name": "a", "other": 1}) == {"name": "a", "tags": []}
    with pytest.raises(ValidationError) as first:
        schema_instance(Body).load({"tags": [1]})
    assert first.value.messages == {"name": ["Missing data for required field."], "tags": {0: ["Not a valid string."]}}
    # the next request's errors are its own, and a default list is a new list every time
    with pytest.raises(ValidationError) as second:
        schema_instance(Body).load({"name": 5})
    assert second.value.messages == {"name": ["Not a valid string."]}
    one, two = schema_instance(Body).load({"name": "x"}), schema_instance(Body).load({"name": "y"})
    one["tags"].append("changed")
    assert two["tags"] == [] and schema_instance(Body, partial=True).load({}) == {}
