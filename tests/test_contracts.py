"""The contracts subscribers and API clients rely on: the generated AsyncAPI and OpenAPI documents
are valid against their own meta-schemas (offline: the AsyncAPI one is vendored in tests/data), a
real event validates against its published schema with a plain JSON Schema validator (null fields
included), and the running HTTP API answers as its OpenAPI document says (schemathesis, below).

Every end-to-end and integration test that starts a stack also has its published events checked
against docs/events.asyncapi.yaml afterwards (mailroom_testing.contracts, the stack_factory fixture)."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator

from mailroom_cli.docs import asyncapi, openapi
from mailroom_shared.events.catalogue import CATALOGUE
from mailroom_shared.events.envelope import build_envelope
from mailroom_testing.contracts import EventContract

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
ASYNCAPI_META_SCHEMA = REPO / "tests" / "data" / "asyncapi" / "2.6.0.json"


def _asyncapi_validator() -> jsonschema.Draft7Validator:
    meta = json.loads(ASYNCAPI_META_SCHEMA.read_text())
    assert meta["$id"] == "http://asyncapi.com/definitions/2.6.0/asyncapi.json"
    return jsonschema.Draft7Validator(meta)


def _messages(document: str) -> list[str]:
    errors = sorted(_asyncapi_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]


# --- the documents against their meta-schemas ------------------------------------------------------


def test_the_asyncapi_document_is_valid_asyncapi_2_6():
    document = yaml.safe_load((DOCS / "events.asyncapi.yaml").read_text())
    assert document["asyncapi"] == "2.6.0"  # the meta-schema vendored in tests/data/asyncapi
    assert _messages(document) == []
    assert _messages(asyncapi()) == []  # what `mailroom docs` generates now, too


def test_the_asyncapi_meta_schema_rejects_a_broken_document():
    """The check can fail: an operation with an unknown member, a message without its payload's
    schema format type, a channel that is not an object."""
    document = asyncapi()
    channel = next(iter(document["channels"].values()))
    channel["subscribe"]["deliveryMode"] = "persistent"
    assert any("deliveryMode" in message for message in _messages(document))
    document = asyncapi()
    next(iter(document["components"]["messages"].values()))["schemaFormat"] = 7
    assert _messages(document)
    document = asyncapi()
    document["channels"]["contacts.events/contact_created"] = "contacts.events"
    assert _messages(document)


def test_every_message_payload_is_json_schema_without_openapi_nullable():
    """JSON Schema has no `nullable`: a field that may be null says so in its type."""
    document = asyncapi()
    text = json.dumps(document)
    assert '"nullable"' not in text
    for message in document["components"]["messages"].values():
        assert message["schemaFormat"] == "application/schema+json;version=draft-07"
    schemas = document["components"]["schemas"]
    jsonschema.Draft7Validator.check_schema({"definitions": schemas})
    assert schemas["ContactCreatedV1"]["properties"]["name"]["type"] == ["string", "null"]
    assert schemas["ConversationAssignedV1"]["properties"]["assignee_user_id"]["type"] == ["string", "null"]


def test_the_openapi_document_is_valid_openapi_3_0():
    document = yaml.safe_load((DOCS / "openapi.yaml").read_text())
    assert document["openapi"] == "3.0.3"  # 3.0: a nullable field is `nullable: true`, never a type array
    assert list(OpenAPIV30SpecValidator(document).iter_errors()) == []
    assert list(OpenAPIV30SpecValidator(openapi()).iter_errors()) == []
    assert '"type": [' not in json.dumps(document)


def test_the_openapi_validator_rejects_a_broken_document():
    document = openapi()
    path = next(iter(document["paths"].values()))
    next(iter(path.values()))["responses"] = {"200": {"content": {}}}  # a response without its description
    assert list(OpenAPIV30SpecValidator(document).iter_errors())
    document = openapi()
    document["components"]["schemas"]["Error"]["type"] = ["object", "null"]  # 3.1 style in a 3.0 document
    assert list(OpenAPIV30SpecValidator(document).iter_errors())


def test_health_and_metrics_are_in_the_openapi_document():
    paths = yaml.safe_load((DOCS / "openapi.yaml").read_text())["paths"]
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert path in paths, path
        assert not next(iter(paths[path].values())).get("security"), f"{path} needs no token"


# --- events against their published schemas ---------------------------------------------------------


def contract() -> EventContract:
    return EventContract(asyncapi())


def test_a_contact_created_without_a_name_validates():
    envelope = build_envelope("contact_created", "c-1", {"contact_id": "c-1", "name": None,
                                                         "emails": ["pat@customer.example"], "created_from": "e-1"})
    assert envelope["data"]["name"] is None
    assert contract().problems(envelope, "contact_created", "contacts.events") == []


def test_an_unassigned_conversation_assigned_validates():
    envelope = build_envelope("conversation_assigned", "v-1", {
        "conversation_id": "v-1", "inbox_id": "i-1", "assignee_user_id": None,
        "previous_assignee_user_id": "agent-1", "assigned_by": None})
    assert contract().problems(envelope, "conversation_assigned", "conversations.events") == []


def test_every_event_of_the_catalogue_has_a_message_whose_schema_checks_its_data():
    """A wrong type, a missing required field and an unknown field are each a problem a
    subscriber's validator would report; the envelope's own members are checked too."""
    checker = contract()
    envelope = build_envelope("contact_created", "c-1", {"contact_id": "c-1", "name": "Pat",
                                                         "emails": ["pat@customer.example"], "created_from": "e-1"})
    assert checker.problems(envelope) == []
    for change, expected in ((lambda e: e["data"].update(name=7), "7 is not of type"),
                             (lambda e: e["data"].pop("contact_id"), "'contact_id' is a required property"),
                             (lambda e: e.update(specversion="0.3"), "'1.0' was expected"),
                             (lambda e: e.pop("id"), "'id' is a required property"),
                             (lambda e: e.update(traceparent="not-a-trace"), "does not match"),
                             (lambda e: e.update(type="mailroom.contact_created.v9"), "no message")):
        broken = json.loads(json.dumps(envelope))
        change(broken)
        assert any(expected in problem for problem in checker.problems(broken)), expected
    assert any("routing key" in p for p in checker.problems(envelope, "contact_updated", "contacts.events"))
    assert any("its channel is on" in p for p in checker.problems(envelope, "contact_created", "ingest.events"))
    assert set(checker.messages) == {f"{name}.v{version}" for name, version in CATALOGUE}


@pytest.mark.parametrize("content", ["[]", '"text"', "null"])
def test_what_is_not_an_envelope_is_a_problem(content):
    assert contract().problems(json.loads(content))


# --- a real stack: its events against the contract, one trace per message ---------------------------

INBOX_ADDRESS = "support@mailroom.test"


@pytest.fixture
def traced_mailroom(stack_factory, tmp_path):
    """ingest (+ its SMTP listener), contacts and conversations with JSON logs, one inbox."""
    import sys

    from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST
    from mailroom_testing.stack import free_port

    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
""")
    smtp_port = free_port()
    stack = stack_factory([INGEST, CONTACTS, CONVERSATIONS], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port),
        "MAILROOM_LOG_FORMAT": "json", "INGEST_MAX_MIME_PARTS": "4"})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    stack.smtp_port = smtp_port
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1, timeout=30)
    [inbox] = stack.get("/api/inboxes")[1]["items"]
    stack.inbox_id = inbox["id"]
    return stack


def _send(stack, sender: str, subject: str) -> str:
    import smtplib
    import uuid
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, INBOX_ADDRESS, subject
    message["Message-ID"] = f"<{uuid.uuid4()}@customer.example>"
    message.set_content("Hello")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
        client.send_message(message)
    return message["Message-ID"]


EVERY_EXCHANGE = [("ingest.events", "#"), ("contacts.events", "#"), ("conversations.events", "#")]


@pytest.mark.integration
def test_one_email_one_trace_through_every_service_and_the_nameless_unassigned_events_validate(traced_mailroom):
    """A bare address (no display name) makes a contact_created with name null; unassigning makes
    a conversation_assigned with assignee null: both validate against the published document (and
    every other event the stack published, after the test). Every event of the email's flow
    carries one trace id, the one the SMTP listener logged when it accepted the message; the
    unassignment, a request of its own, starts another trace."""
    from mailroom_shared.events import tracing
    from mailroom_testing.subscriber import EventSubscriber

    stack = traced_mailroom
    published = EventContract.published()
    with EventSubscriber(stack.amqp_uri, EVERY_EXCHANGE) as events:
        _send(stack, "nameless@customer.example", "Where is my parcel?")
        [received] = events.wait_for("message_received")
        [created] = events.wait_for("contact_created")
        [conversation] = events.wait_for("conversation_created")
        [added] = events.wait_for("message_added")
        timeline = events.wait_for("timeline_entry_added")
        flow = [received, created, conversation, added, *timeline]
        conversation_id = conversation["data"]["conversation_id"]
        status, _ = stack.post(f"/api/conversations/{conversation_id}/assign", {"assignee_user_id": "agent-1"})
        assert status == 200
        status, body = stack.post(f"/api/conversations/{conversation_id}/assign", {"assignee_user_id": None},
                                  headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        assert status == 200 and body["assignee_user_id"] is None
        assigned = events.wait_for("conversation_assigned", count=2)
    unassigned = next(e for e in assigned if e["data"]["assignee_user_id"] is None)

    assert created["data"]["name"] is None
    for envelope in (created, unassigned, *flow):
        clean = {k: v for k, v in envelope.items() if not k.startswith("_")}
        assert published.problems(clean, envelope["_routing_key"], envelope["_exchange"]) == []

    intake_id = received["data"]["intake_id"]
    trace = tracing.trace_id(received["traceparent"])
    assert trace == tracing.derived_trace_id(intake_id)
    assert {tracing.trace_id(e["traceparent"]) for e in flow} == {trace}
    assert len({tracing.parse(e["traceparent"])["span_id"] for e in flow}) == len(flow)  # a span each
    # the request's caller named its trace: the unassignment continues it; the other request started its own
    assert tracing.trace_id(unassigned["traceparent"]) == "0af7651916cd43dd8448eb211c80319c"
    assert len({tracing.trace_id(e["traceparent"]) for e in assigned} | {trace}) == 3

    accepted = [json.loads(line) for line in stack.log("smtp").splitlines()
                if line.startswith("{") and "accepted" in line]
    assert [line["trace_id"] for line in accepted] == [trace]
    assert accepted[0]["service"] == "ingest"


@pytest.mark.integration
def test_a_message_quarantined_carries_its_intake_trace(traced_mailroom):
    """Over INGEST_MAX_MIME_PARTS: quarantined, and its event is in the trace the listener logged."""
    import smtplib
    from email.message import EmailMessage

    from mailroom_shared.events import tracing
    from mailroom_testing.subscriber import EventSubscriber

    stack = traced_mailroom
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "parts@customer.example", INBOX_ADDRESS, "Many parts"
    message.set_content("Hello")
    for number in range(6):
        message.add_attachment(f"part {number}".encode(), maintype="application", subtype="octet-stream",
                               filename=f"part{number}.bin")
    with EventSubscriber(stack.amqp_uri, EVERY_EXCHANGE) as events:
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
            client.send_message(message)
        [quarantined] = events.wait_for("message_quarantined")
    trace = tracing.trace_id(quarantined["traceparent"])
    assert trace == tracing.derived_trace_id(quarantined["data"]["intake_id"])
    accepted = [json.loads(line) for line in stack.log("smtp").splitlines()
                if line.startswith("{") and "accepted" in line]
    assert [line["trace_id"] for line in accepted] == [trace]


# --- the running HTTP API against its OpenAPI document (schemathesis) --------------------------------
#
# Every operation of docs/openapi.yaml is called with a few generated requests (bounded: the suite
# stays fast) on a stack of the five services, as inbox agent-1 with super-admin rights (a dev
# token of the test secret). The one check: no answer is a 5xx. Whatever the generated requests
# made the services publish is checked against the AsyncAPI document afterwards, too.

import schemathesis  # noqa: E402 - the API fuzzing below only
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

FUZZ_EXAMPLES = 5  # per operation and mode (valid and invalid requests): ~70 operations
# the coverage phase (every boundary of every field: ~40 requests per operation) and the stateful
# phase are left to a longer run: `make test` keeps this under a minute or so
SCHEMATHESIS = SchemathesisConfig.from_dict({
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "generation": {"max-examples": FUZZ_EXAMPLES, "deterministic": True, "database": "none"}})
API = schemathesis.openapi.from_path(DOCS / "openapi.yaml", config=SCHEMATHESIS)
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")  # raw mail is bytes


@pytest.fixture(scope="module")
def api_stack(rabbit_admin, postgres_admin, tmp_path_factory):
    from cryptography.fernet import Fernet

    from mailroom_testing.contracts import bind_tap, check_published_events
    from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND
    from mailroom_testing.stack import Stack
    from mailroom_testing.tokens import SUPER_ADMIN, TEST_ENV, auth

    workdir = tmp_path_factory.mktemp("schemathesis")
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
""")
    vhost = rabbit_admin.create_vhost()
    amqp_uri = rabbit_admin.uri_for(vhost)
    services = [INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER]
    databases = {spec.name: postgres_admin.create_database(spec.name) for spec in services}
    stack = Stack(services=services, amqp_uri=amqp_uri, database_urls=databases, workdir=workdir / "stack",
                  extra_env={**TEST_ENV, "CONVERSATIONS_INBOXES_FILE": str(inboxes),
                             "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(),
                             "MAILROOM_CONNECTOR_SECRET_KEY": Fernet.generate_key().decode()},
                  default_headers=auth("agent-1", email="agent@mailroom.test", roles=[SUPER_ADMIN]))
    try:
        bind_tap(amqp_uri)
        stack.start()
        yield stack
        stack.stop()
        checked, problems = check_published_events(amqp_uri)
        assert not problems, f"{len(problems)} of {checked} events against the AsyncAPI document:\n" + \
            "\n".join(problems[:20])
    finally:
        stack.stop()
        rabbit_admin.delete_vhost(vhost)
        for url in databases.values():
            postgres_admin.drop_database(url)


@pytest.mark.integration
@API.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_never_answers_5xx(case, api_stack):
    from mailroom_shared.routing import service_for_path

    service = service_for_path(case.path)
    # /health/live, /health/ready and /metrics: every service answers them on its own port
    for name in [service] if service in api_stack.ports else sorted(api_stack.ports):
        case.call_and_validate(base_url=f"http://127.0.0.1:{api_stack.ports[name]}",
                               headers=api_stack.default_headers, checks=[not_a_server_error], timeout=30)


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/api/outbound/templates?inbox_id=a%00b", "/api/outbound/snippets?inbox_id=%00",
                                  "/api/contacts?email=x%00@customer.example", "/api/contacts/c%00",
                                  "/api/conversations/v%00", "/api/webhooks/%00"])
def test_a_nul_character_in_a_parameter_is_a_400_not_a_500(api_stack, path):
    """What schemathesis found: PostgreSQL refuses NUL in text, the query failed, the answer was 500."""
    status, body = api_stack.get(path)
    assert status == 400, body
    assert "NUL" in body["error"]["message"]


@pytest.mark.integration
def test_the_tap_reports_what_the_stack_published_wrongly_and_skips_what_the_test_published(amqp_uri):
    """What stack_factory does after every stack test, on a bare vhost: an envelope published the
    way the relay does (no test mark) that breaks its schema is a problem, a valid one is not,
    and the test's own hostile publishes (mailroom_testing.publishing) are left out."""
    import pika

    from mailroom_testing.contracts import bind_tap, check_published_events
    from mailroom_testing.publishing import publish_raw

    bind_tap(amqp_uri)
    good = build_envelope("contact_created", "c-1", {"contact_id": "c-1", "name": None,
                                                     "emails": ["pat@customer.example"], "created_from": "e-1"})
    bad = json.loads(json.dumps(good))
    bad["data"]["emails"] = "pat@customer.example"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = connection.channel()
        for envelope, routing_key in ((good, "contact_created"), (bad, "contact_created"), (good, "contact_updated")):
            channel.basic_publish("contacts.events", routing_key, json.dumps(envelope).encode(),
                                  pika.BasicProperties(content_type="application/json", app_id=envelope["source"]))
        channel.basic_publish("contacts.events", "contact_created", b"not json")
    finally:
        connection.close()
    publish_raw(amqp_uri, "contacts.events", "contact_created", b"hostile on purpose")
    checked, problems = check_published_events(amqp_uri)
    assert checked == 4
    assert len(problems) == 3, problems
    assert any("data/emails" in p and "is not of type 'array'" in p for p in problems)
    assert any("routing key 'contact_updated'" in p for p in problems)
    assert any("not JSON" in p for p in problems)
    assert check_published_events(amqp_uri) == (0, [])  # taken off the queue
