"""The `quote` insert (a link to a sales quote) beside document/meeting/article/video/link: accepted
by the request schema and the body rules, rendered as "Quote: <title>" in HTML and text, and refused
like the others when its URL is not an absolute http(s) one or its title tries to inject markup."""

import pytest
from marshmallow import ValidationError

from outbound.domain.body import INSERT_KINDS, InvalidBody, compose_body, parse_inserts
from outbound.schemas import ComposeSchema


def test_a_quote_insert_is_rendered_with_its_label_in_html_and_text():
    body = compose_body(html="<p>Here is our offer.</p>", text=None, inserts=parse_inserts(
        [{"kind": "quote", "url": "https://quotes.example/q/42", "title": "Q-42: 12 seats"}]))
    assert "Quote: " in body.html and 'href="https://quotes.example/q/42"' in body.html
    assert "Quote: Q-42: 12 seats (https://quotes.example/q/42)" in body.text


def test_the_schema_accepts_quote_and_still_refuses_unknown_kinds():
    loaded = ComposeSchema().load({"to": ["ada@example.com"], "text": "x",
                                   "inserts": [{"kind": "quote", "url": "https://q.example/1"}]})
    assert loaded["inserts"][0]["kind"] == "quote"
    assert "quote" in INSERT_KINDS and INSERT_KINDS[-1] == "link"
    with pytest.raises(ValidationError) as error:
        ComposeSchema().load({"to": ["ada@example.com"], "text": "x",
                              "inserts": [{"kind": "invoice", "url": "https://q.example/1"}]})
    assert "inserts" in error.value.messages
    with pytest.raises(InvalidBody, match="kind: one of document, meeting, article, video, quote, link"):
        parse_inserts([{"kind": "Quote", "url": "https://q.example/1"}])  # kinds are exact, lower-case


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<script>x</script>", "//q.example/1",
                                 "https://q.example/a b", "", "ftp://q.example/1"])
def test_a_quote_with_a_hostile_or_malformed_url_is_refused(url):
    with pytest.raises(InvalidBody, match=r"inserts\[0\].url"):
        parse_inserts([{"kind": "quote", "url": url, "title": "x"}])


def test_a_hostile_quote_title_is_escaped_not_rendered():
    body = compose_body(html=None, text="Offer", inserts=parse_inserts([
        {"kind": "quote", "url": "https://q.example/1?a=1&b=\"2\"",
         "title": "<script>alert(1)</script><img src=x onerror=alert(2)>"}]))
    assert "<script" not in body.html and "<img" not in body.html  # shown as text, never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;</a>" in body.html


def test_the_same_quote_twice_is_kept_twice_in_order():
    inserts = parse_inserts([{"kind": "quote", "url": "https://q.example/1", "title": "A"},
                             {"kind": "quote", "url": "https://q.example/1", "title": "A"}])
    body = compose_body(html="<p>x</p>", text=None, inserts=inserts)
    assert body.text.count("Quote: A (https://q.example/1)") == 2
