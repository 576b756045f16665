"""The log masker shared by build and app logs (`libs.masking`)."""

from __future__ import annotations

from launchdeck.libs.masking import MASK, make_masker


def test_masker_replaces_every_secret_value() -> None:
    """Each secret value (longest first, overlapping ones too) becomes *** wherever it appears."""
    mask = make_masker(["hunter2", "hunter2-long", "ab", ""])
    assert mask is not None
    assert mask("pw=hunter2 and hunter2-long; ab stays") == "pw=*** and ***; ab stays"
    assert make_masker([]) is None
    assert make_masker(["x"]) is None  # too short to mask without shredding every line


def test_each_line_of_a_multi_line_value_is_masked() -> None:
    """A PEM-like value printed by a build arrives one line at a time: every line loses its
    part, not only a line that would hold the whole value."""
    key = (
        "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\r\nAQEFAASCBKcwggSjAgEAAoIB\n"
        "-----END KEY-----"
    )
    mask = make_masker([key])
    assert mask is not None
    printed = ["key: -----BEGIN KEY-----", "MIIEvQIBADANBgkqhkiG9w0B", "AQEFAASCBKcwggSjAgEAAoIB"]
    assert [mask(line) for line in printed] == [f"key: {MASK}", MASK, MASK]
    assert mask(key.replace("\r", "")) == "\n".join([MASK] * 4)


def test_regex_characters_in_values_are_literal() -> None:
    """A value is matched as text: `.`, `*`, `(` in it mean themselves."""
    mask = make_masker(["a.b*c(d"])
    assert mask is not None
    assert mask("x a.b*c(d y axbbbc(d") == f"x {MASK} y axbbbc(d"
