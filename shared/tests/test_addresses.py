import pytest

from mailroom_shared.addresses import InvalidAddress, normalise_email, try_normalise_email


@pytest.mark.parametrize(("raw", "expected"), [
    ("John.Doe@EXAMPLE.com", "john.doe@example.com"),
    (" <Foo@Bücher.DE> ", "foo@bücher.de"),
    ("x@xn--bcher-kva.de", "x@bücher.de"),  # IDNA: the same mailbox whichever form is written
    ('"quoted.local"@example.com', '"quoted.local"@example.com'),
])
def test_the_same_mailbox_normalises_to_one_form(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no at sign", "a@", "@b.com", "a@b@c.com", "John <a@b.com>, c@d.com"])
def test_anything_but_one_mailbox_is_refused(raw):
    with pytest.raises(InvalidAddress):
        normalise_email(raw)
    assert try_normalise_email(raw) is None
