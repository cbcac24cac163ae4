"""What makes parse + analyse cheaper must not change what they find: the screen's literal scans find what
its case-insensitive regexes found, the forward pre-check's line scans what its `^`/re.M regexes found, and
what a worker remembers across messages (addresses, header objects) gives the answers parsing afresh gives."""

from __future__ import annotations

import random
import re
import sys
import traceback

import pytest

from ingest.domain import classify, forwards, parsing
from ingest.domain.model import Address, ParseLimits
from ingest.domain.parsing import MessageTooComplex, parse_message

# -- the screen (_prescan) ------------------------------------------------------------------------


def multipart(boundary_declaration: str, boundary: str, parts: int, content_type: str = "Content-Type") -> bytes:
    body = "".join(f"--{boundary}\nContent-Type: text/plain\n\npart {i}\n" for i in range(parts))
    return (f"From: a@example.org\n{content_type}: multipart/mixed; {boundary_declaration}\n\n"
            f"{body}--{boundary}--\n").encode()


@pytest.mark.parametrize("declaration", ['boundary="AbC"', 'BOUNDARY="AbC"', "Boundary=AbC", 'boundary = "AbC"'])
def test_a_boundary_declared_in_any_case_counts_its_parts(declaration):
    limits = ParseLimits(max_parts=20)
    assert len(parse_message(multipart(declaration, "AbC", 10), limits).attachments) == 9
    with pytest.raises(MessageTooComplex, match="more than 20 MIME parts"):
        parse_message(multipart(declaration, "AbC", 40), limits)


def test_the_boundary_is_counted_as_written_not_lower_cased():
    # the delimiter lines are `--AbC`: counting `--abc` would find none and let the bomb through
    raw = multipart('boundary="AbC"', "AbC", 40)
    with pytest.raises(MessageTooComplex, match="parts"):
        parsing._prescan(raw, ParseLimits(max_parts=20))
    parsing._prescan(raw.replace(b"--AbC\n", b"--abc\n"), ParseLimits(max_parts=20))


@pytest.mark.parametrize("header", ["Content-Type", "CONTENT-TYPE", "content-type"])
def test_embedded_messages_count_as_containers_in_any_case(header):
    raw = (f"{header}: MESSAGE/RFC822\n\n" * 6 + "Subject: inner\n\nbody\n").encode()
    with pytest.raises(MessageTooComplex, match="more than 5 MIME parts"):
        parsing._prescan(raw, ParseLimits(max_parts=5))
    parsing._prescan(raw, ParseLimits(max_parts=6))


def test_parameters_are_counted_in_content_fields_at_a_line_start_only():
    many = ";".join(f"p{i}=v" for i in range(12))
    at_line_start = f"From: a@example.org\nCONTENT-Disposition: attachment;\n\t{many}\n\nbody\n".encode()
    with pytest.raises(MessageTooComplex, match="a CONTENT-Disposition header with more than 10 parameters"):
        parsing._prescan(at_line_start, ParseLimits(max_header_params=10))
    inside_a_line = f"From: a@example.org\nX-Note: see content-type: {many}\n\nbody\n".encode()
    parsing._prescan(inside_a_line, ParseLimits(max_header_params=10))


def reference_screen_counts(raw: bytes) -> tuple[list, int, list]:
    """What the screen counted with re.I / re.M searches over the whole message, before."""
    fields = re.compile(rb"^content-[a-z0-9-]*[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*", re.I | re.M)
    declaration = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""", re.I)
    message_type = re.compile(rb"content-type\s*:\s*message/(?:rfc822|global)", re.I)
    return ([m.span() for m in fields.finditer(raw)], len(message_type.findall(raw)),
            [quoted or bare for quoted, bare in declaration.findall(raw)])


def screen_counts(raw: bytes) -> tuple[list, int, list]:
    lowered = raw.lower()
    declarations = [raw[slice(*m.span(1 if m.start(1) >= 0 else 2))]
                    for m in parsing._matches(parsing._BOUNDARY_DECLARATION, lowered, b"boundary")]
    return ([m.span() for m in parsing._matches(parsing._MIME_HEADER_FIELD, lowered, b"content-", line_start=True)],
            sum(1 for _ in parsing._matches(parsing._MESSAGE_TYPE, lowered, b"content-type")), declarations)


def test_the_literal_scans_find_what_the_case_insensitive_searches_found():
    pieces = [b"\n", b"\r\n", b"\t", b" ", b";", b"=", b'"', b":", b"Content-", b"CONTENT-TYPE", b"content-type",
              b"Content-Type:", b" message/rfc822", b"MESSAGE/Global", b"boundary", b"BOUNDARY=", b'boundary="b=1"',
              b"x", b"Ab", b"--", b"\n ", b"a" * 210]
    rng = random.Random(16)
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        assert screen_counts(raw) == reference_screen_counts(raw), raw


# -- the forward pre-check ------------------------------------------------------------------------


def test_a_marker_on_the_first_line_is_found():
    assert forwards._has_forward_marker("---------- Forwarded message ---------\nFrom: a@b.example", "")
    assert forwards._has_forward_marker("From: Ada <ada@b.example>\nSubject: x", "")
    assert forwards._has_forward_marker("  > Von: Ada", "")
    assert not forwards._has_forward_marker("Hello: the order arrived\nThanks", "")


def test_a_label_further_than_48_characters_into_its_line_is_no_marker():
    assert forwards._has_forward_marker(" " * 60 + "From: Ada", "")  # the indentation does not count
    assert not forwards._has_forward_marker("x" * 49 + "From: Ada", "")


def test_the_attribution_search_over_colon_lines_finds_what_the_whole_text_search_found():
    pieces = ["\n", ":", "：", "@", ">", " ", "\t", "a", "wrote", "x@y.example", "\n> ", "b" * 90, "c" * 210]
    rng = random.Random(16)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        assert forwards._has_attribution_end(text) == bool(forwards._ATTRIBUTION_END.search(text)), text


def test_an_attribution_two_lines_above_its_colon_is_found_and_three_lines_is_not():
    assert forwards._has_forward_marker("Hi\nOn Monday Ada <ada@b.example>\nof Acme\nwrote:\n> x", "Re: hello")
    assert not forwards._has_forward_marker("Hi\nOn Monday Ada <ada@b.example>\nof\nAcme\nwrote:\n", "Re: hello")


def test_the_subject_repeated_in_ascii_or_other_text_is_found_as_before():
    assert forwards._has_forward_marker("Some text\nQUARTERLY REPORT figures\n", "Quarterly report")
    assert forwards._has_forward_marker("Texte\nRAPPORT ＤÉTAILLÉ\n", "Rapport détaillé")  # NFKC, casefold
    assert not forwards._has_forward_marker("Some text\nQuarterly figures\n", "Quarterly report")


# -- what a worker remembers across messages -------------------------------------------------------

MESSAGE = (b"From: =?utf-8?q?Ren=C3=A9e?= <Renee@Example.ORG>\r\nTo: Support <support@mailroom.test>\r\n"
           b"Subject: Hello\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
           b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Gr=C3=BC=C3=9Fe\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n"
           b"Content-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"JVBERi0=\r\n--b1--\r\n")


def summary(raw: bytes) -> tuple:
    parsed = parse_message(raw)
    attachments = [(a.filename, a.content_type, a.payload) for a in parsed.attachments]
    return parsed.sender, parsed.to, parsed.text, attachments, parsed.defects


def test_a_message_parsed_again_gives_the_same_result():
    parsing._read_mailbox_cached.cache_clear()
    parsing._shared_structured_header.cache_clear()
    first = summary(MESSAGE)
    assert first[0] == Address("Renée", "renee@example.org") and first[2] == "Grüße"
    assert parsing._shared_structured_header.cache_info().currsize > 0
    assert summary(MESSAGE) == first
    assert parsing._read_mailbox_cached.cache_info().hits >= 2
    assert parsing._shared_structured_header.cache_info().hits > 0


def test_a_short_header_is_shared_between_trees():
    one, other = parsing._message_policy().header_factory, parsing._message_policy().header_factory
    header = one("Content-Transfer-Encoding", "base64")
    assert other("Content-Transfer-Encoding", "base64") is header and header.cte == "base64"
    assert type(one("Content-Type", "text/plain")) is type(other("Content-Type", "text/html"))


def test_a_value_declaring_a_boundary_is_built_per_tree_only():
    parsing._shared_structured_header.cache_clear()
    one, other = parsing._message_policy().header_factory, parsing._message_policy().header_factory
    header = one("Content-Type", 'multipart/mixed; boundary="b1"')
    assert header.params["boundary"] == "b1" and one("Content-Type", 'multipart/mixed; boundary="b1"') is header
    assert other("Content-Type", 'multipart/mixed; boundary="b1"') is not header
    assert parsing._shared_structured_header.cache_info().currsize == 0


def test_a_recursion_error_is_not_remembered():
    value = "(" * 200 + "a@b.example"
    parsing._shared_structured_header.cache_clear()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(traceback.extract_stack()) + 100)
    try:
        assert not hasattr(parsing._message_policy().header_factory("Resent-From", value), "addresses")
    finally:
        sys.setrecursionlimit(limit)
    assert parsing._shared_structured_header.cache_info().currsize == 0


def test_long_address_entries_are_parsed_each_time_not_kept():
    parsing._read_mailbox_cached.cache_clear()
    long_name = "x" * (parsing._ADDRESS_CACHE_MAX_CHARS + 1)
    assert parsing._parse_mailbox(f"{long_name} <a@b.example>") == Address(long_name, "a@b.example")
    assert parsing._read_mailbox_cached.cache_info().currsize == 0
    assert parsing._parse_mailbox("Ada <ADA@B.example>") == Address("Ada", "ada@b.example")
    assert parsing._read_mailbox_cached.cache_info().currsize == 1


def test_the_inbox_addresses_are_normalised_once_per_set():
    classify._normalised_set.cache_clear()
    parsed = parse_message(b"From: Support <SUPPORT@mailroom.test>\nMessage-ID: <x@mailroom.local>\n\nhi\n")
    for _ in range(3):
        verdict = classify.classify(parsed, own_addresses=frozenset({"Support@Mailroom.test"}),
                                    own_message_id_domain="mailroom.local")
        assert verdict.loop and "loop:own_sender_and_message_id" in verdict.reasons
    assert classify._normalised_set.cache_info().misses == 1
