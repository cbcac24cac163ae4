import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("raw", ['"support@mailroom.test"@evil.example', '<"a@b"@c.example>', '"x@y@z"@c.example'])
def test_an_at_in_a_quoted_local_part_is_refused(raw):
    # it reads as another address (ours), and code that splits at the first "@" takes the wrong domain
    with pytest.raises(InvalidAddress, match="more than one '@'"):
        normalise_email(raw)
    assert try_normalise_email(raw) is None


def test_an_address_longer_than_the_columns_is_refused():
    domain = ".".join(["d" * 60] * 4) + ".example"  # 252 characters: a valid domain
    longest = "l" * (320 - 1 - len(domain)) + "@" + domain
    assert len(longest) == 320 and normalise_email(longest.upper()) == longest
    with pytest.raises(InvalidAddress, match="321 characters"):
        normalise_email("l" + longest)
    assert try_normalise_email("l" + longest) is None


def test_importing_it_builds_flankers_parsers_quietly_even_with_stale_tables(tmp_path):
    # a copy of flanker without its parser tables, first on the path: ply rebuilds them on import
    package = Path(importlib.util.find_spec("flanker").submodule_search_locations[0])
    shutil.copytree(package, tmp_path / "flanker", ignore=shutil.ignore_patterns("__pycache__", "*_parsetab.py"))
    result = subprocess.run(
        [sys.executable, "-c", "import flanker, mailroom_shared.addresses as a;"
                               "print(flanker.__file__, a.normalise_email('A@B.com'))"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "flanker" / "__init__.py"), "a@b.com"]
    assert result.stderr == ""
