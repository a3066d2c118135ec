"""Contact canonicalisation: the e-mail and phone policy of ``portalauth.contacts``.

Examples pin the documented policy (and the hostile inputs of SECURITY-REQUIREMENTS §4);
Hypothesis properties show that it holds beyond the examples: normalising is idempotent,
equivalent spellings share one key, and arbitrary text either yields a clean single address or
raises ``InvalidContact``, never anything else.
"""

from __future__ import annotations

import re
import string
import unicodedata

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from portalauth import contacts
from portalauth.contacts import (
    EMAIL_MAX,
    Email,
    email_send_key,
    mask_email,
    mask_phone,
    normalize_email,
    normalize_phone,
)
from portalauth.errors import InvalidContact, InvalidInput

# Categories that must never survive into a stored address or key: control, format (bidi
# overrides, zero-width), surrogates, private use, unassigned, and every kind of space/separator.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)


def _clean(text: str) -> bool:
    return not any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text)


# -- strategies -------------------------------------------------------------------------------
def _nfkc_stable(ch: str) -> bool:
    return unicodedata.normalize("NFKC", ch) == ch


_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
_UNICODE_LETTERS = st.characters(
    categories=("Ll", "Lu", "Lo"), min_codepoint=0xC0, max_codepoint=0x24F
).filter(_nfkc_stable)
_atoms = st.text(st.sampled_from(_ATEXT) | _UNICODE_LETTERS, min_size=1, max_size=10)
# "=?" would start an RFC 2047 encoded word: refused by policy, so left out here.
local_parts = st.lists(_atoms, min_size=1, max_size=3).map(".".join).filter(lambda t: "=?" not in t)
_labels = st.text(
    st.sampled_from(string.ascii_lowercase + string.digits + "äöüéñçøå"), min_size=1, max_size=12
)
domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_labels, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "example", "de", "co.uk"]),
)
#: Addresses the policy accepts: dot-atom local parts (ASCII atext and NFKC-stable letters),
#: ASCII or Unicode domains.
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)

#: Characters that turn an address into something else when put inside it: line breaks, NUL,
#: separators, bidi and zero-width format characters, list/comment/display-name syntax, a
#: second "@" and the start of an RFC 2047 encoded word.
_HOSTILE_CHARS = [
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\t",
    " ",
    "\x0b",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u200b",
    "\u2060",
    "\ufeff",
    "\u00a0",
    "\u3000",
    ",",
    ";",
    "<",
    ">",
    "(",
    ")",
    '"',
    "[",
    "]",
    ":",
    "\\",
    "@",
    "=?",
]

#: Text around the shape of an address, so fuzzing reaches past the first syntax check.
_near_addresses = st.lists(
    st.sampled_from([*"ab.-+@", "x.com", "Mike@Example.COM", *_HOSTILE_CHARS]), max_size=20
).map("".join)


@st.composite
def case_variants(draw: st.DrawFn, address: str) -> str:
    """``address`` with the case of some letters swapped (only where swapping back restores the
    letter, so no ``ß`` -> ``SS`` or dotless ``ı`` -> ``I`` changes of identity)."""
    flips = draw(st.lists(st.booleans(), min_size=len(address), max_size=len(address)))
    out = []
    for ch, flip in zip(address, flips, strict=True):
        swapped = ch.swapcase()
        if flip and len(swapped) == 1 and swapped.swapcase() == ch:
            out.append(swapped)
        else:
            out.append(ch)
    return "".join(out)


_whitespace = st.text(st.sampled_from(" \t\r\n\u00a0\u2028\u3000"), max_size=3)


# -- e-mail: examples -------------------------------------------------------------------------
def test_an_address_keeps_what_was_typed_and_keys_on_the_lowercase_form() -> None:  # R63
    checked = normalize_email("  Mike.Roe@Example.COM\n")
    assert isinstance(checked, Email)
    assert checked == ("Mike.Roe@example.com", "mike.roe@example.com")
    assert checked.address == "Mike.Roe@example.com"
    assert checked.key == "mike.roe@example.com"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Mike@Example.COM", "mike@example.com"),
        ("MIKE@EXAMPLE.COM", "mike@example.com"),
        (" mike@example.com ", "mike@example.com"),
        ("\tmike@example.com\r\n", "mike@example.com"),
        ("mike@bücher.example", "mike@xn--bcher-kva.example"),
        ("mike@BÜCHER.example", "mike@xn--bcher-kva.example"),
        ("mike@XN--BCHER-KVA.EXAMPLE", "mike@bücher.example"),
        ("mike@bu\u0308cher.example", "mike@b\u00fccher.example"),  # NFD vs NFC domain
        ("jose\u0301@example.com", "jos\u00e9@example.com"),  # NFD vs NFC local part
        ("JOSÉ@example.com", "josé@example.com"),
        ("\u212aelvin@example.com", "kelvin@example.com"),  # KELVIN SIGN is canonically K (NFC)
    ],
)
def test_equivalent_spellings_share_one_key(one: str, other: str) -> None:  # R63 R10
    assert normalize_email(one).key == normalize_email(other).key


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("mıke@example.org", "mike@example.org"),  # dotless i (Django CVE-2019-19844)
        ("MİKE@example.org", "mike@example.org"),  # dotted capital I lowers to i + U+0307
        ("mike@ıxample.org", "mike@ixample.org"),
        ("mіke@example.com", "mike@example.com"),  # Cyrillic і (U+0456)
        ("straße@example.de", "strasse@example.de"),  # casefold would merge these
        ("Straße@example.de", "STRASSE@example.de"),
        ("mike+tag@example.com", "mike@example.com"),  # plus-tags are identity
        ("m.i.k.e@gmail.com", "mike@gmail.com"),  # so are dots
    ],
)
def test_distinct_mailboxes_keep_distinct_keys(one: str, other: str) -> None:  # R63 R62
    assert normalize_email(one).key != normalize_email(other).key


@pytest.mark.parametrize(
    "value",
    [
        "ａ@ｂ.com",  # fullwidth letters
        "ｍｉｋｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # fullwidth, including the ＠ and ．
        "mike＠example.com",  # fullwidth at sign only
        "ﬁnn@example.com",  # ligature (NFKC -> finn)
        "mike²@example.com",  # superscript
        "mike@ｅxample.com",
    ],
)
def test_non_nfkc_stable_input_is_rejected_not_folded(value: str) -> None:  # R63
    with pytest.raises(InvalidContact):
        normalize_email(value)


_HOSTILE_ADDRESSES = [
    # lists, groups, comments, display names (R62, CVE-2023-27043, GitLab CVE-2023-7028)
    "victim@x.com, attacker@y.com",
    "victim@x.com,attacker@y.com",
    "victim@x.com; attacker@y.com",
    "alice@example.org(<bob@example.org>",
    "alice@example.org@<bob@example.org>",
    "alice@example.org (comment)",
    "(comment)alice@example.org",
    "Bob <bob@example.com>",
    '"Bob" <bob@example.com>',
    '"bob@example.com" <attacker@y.com>',
    "<bob@example.com>",
    "undisclosed-recipients:;",
    "group: bob@example.com;",
    '"a@b"@example.com',
    '"bob"@example.com',
    "bob@[127.0.0.1]",
    "bob@[IPv6:::1]",
    "<script>@x.com",
    # header injection: CR/LF, NUL and other line breaks inside (R61, R62)
    "victim@x.com\r\nBcc: attacker@y.com",
    "victim@x.com\nBcc: attacker@y.com",
    "victim@x.com\rBcc: attacker@y.com",
    "vic\r\ntim@x.com",
    "victim@x.com\x00attacker@y.com",
    "victim\x00@x.com",
    "victim@x.com\u2028Bcc: attacker@y.com",
    "victim@x.com\x85Bcc: attacker@y.com",
    "victim@x.com%0d%0aBcc:attacker@y.com",
    # invisible and bidi characters that make two addresses look alike
    "bob\u202e@example.com",
    "\u202ebob@example.com",
    "bo\u200bb@example.com",
    "bob@exa\u200bmple.com",
    "bob\u2060@example.com",
    "bob\ufeff@example.com",
    "bob\u00ad@example.com",
    # spaces inside, empty parts, malformed
    "bob @example.com",
    "bob@exa mple.com",
    "bob\t@example.com",
    "bob\u00a0@example.com",
    "",
    "   ",
    "@example.com",
    "bob@",
    "bob",
    "bob@@example.com",
    "bob@example..com",
    ".bob@example.com",
    "bob.@example.com",
    "bo..b@example.com",
    "bob@example.com.",
    "bob@localhost",
    "bob@-example.com",
    # over the caps (R22)
    "a" * 64 + "@" + "b" * 200 + ".com",
    "a@" + "b" * 250 + ".com",
    "a@" + "b" * 64 + ".com",  # label over 63
    "x" * 10_000 + "@example.com",
]


@pytest.mark.parametrize("value", _HOSTILE_ADDRESSES)
def test_hostile_addresses_are_rejected(value: str) -> None:  # R62 R22
    with pytest.raises(InvalidContact) as raised:
        normalize_email(value)
    assert raised.value.field == "email"
    if value.strip():
        assert value not in str(raised.value)  # the error never echoes the input


@pytest.mark.parametrize(
    "value",
    [
        None,
        123,
        1.5,
        True,
        b"bob@example.com",
        ["victim@x.com", "attacker@y.com"],  # GitLab CVE-2023-7028
        ["bob@example.com"],
        ("bob@example.com",),
        {"email": "bob@example.com"},
        {"$ne": ""},
    ],
)
def test_non_strings_are_rejected_never_coerced(value: object) -> None:  # R23
    with pytest.raises(InvalidContact):
        normalize_email(value)


def test_invalid_contact_is_an_invalid_input() -> None:  # R23
    with pytest.raises(InvalidInput):
        normalize_email(["bob@example.com"])


def test_the_length_cap_is_254() -> None:  # R22
    local = "a" * 64
    domain = ".".join(["b" * 63, "c" * 63, "d" * 57]) + ".com"
    longest = f"{local}@{domain}"
    assert len(longest) == EMAIL_MAX
    assert normalize_email(longest).address == longest
    with pytest.raises(InvalidContact):
        normalize_email("e" + longest)


def test_the_length_cap_comes_before_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:  # R22
    def parser_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("the e-mail parser ran on oversized input")

    monkeypatch.setattr(contacts.email_validator, "validate_email", parser_called)
    with pytest.raises(InvalidContact):
        normalize_email("a" * 1_000_000 + "@example.com")
    with pytest.raises(InvalidContact):
        normalize_email("a@" + "b" * 1_000_000 + ".com")


def test_the_local_part_cap_is_64_octets() -> None:  # R22 R62
    assert normalize_email("a" * 64 + "@x.com").address == "a" * 64 + "@x.com"
    with pytest.raises(InvalidContact):
        normalize_email("a" * 65 + "@x.com")
    assert normalize_email("é" * 32 + "@x.com").key == "é" * 32 + "@x.com"
    with pytest.raises(InvalidContact):
        normalize_email("é" * 33 + "@x.com")  # 33 characters, 66 octets


@pytest.mark.parametrize(
    "value",
    [
        "=?UTF-8?Q?victim=0A?=@x.com",  # decodes to "victim\n" in a To: header
        "=?utf-8?q?attacker=40evil=2Ecom?=@x.com",  # decodes to "attacker@evil.com"
        "=?UTF-8?B?YXR0YWNrZXJAZXZpbC5jb20=?=@x.com",
        "bob=?x@x.com",
    ],
)
def test_encoded_words_are_rejected(value: str) -> None:  # R61 R62
    with pytest.raises(InvalidContact):
        normalize_email(value)


# -- e-mail: the plain-ASCII fast path agrees with the full check -------------------------------
def _full_check(text: str) -> Email | None:
    """``normalize_email`` without its fast path: email-validator's answer and our rules."""
    try:
        return contacts._validated_email(text)
    except InvalidContact:
        return None


_ascii_parts = st.lists(
    st.sampled_from(
        [
            *"aZ09.-_+=?'`{}|~!#$%&*/^@",
            "xn--",
            "ab--",
            "--",
            ".test",
            ".local",
            ".localhost",
            ".com",
            ".c0m",
            ".co",
            "example",
            "EXAMPLE",
            "a" * 63,
            "a" * 64,
            ".",
            "..",
            "1",
            "Postmaster@",
            "INFO@",
            "Abuse@",
            "www@",
        ]
    ),
    max_size=24,
).map("".join)


@given(st.one_of(_ascii_parts, addresses, _near_addresses))
def test_the_plain_address_fast_path_answers_as_the_full_check_does(text: str) -> None:  # R62 R63
    fast = contacts._plain_email(text)
    if fast is not None:  # when the fast path answers, it is the full check's answer
        assert fast == _full_check(text)


@pytest.mark.parametrize(
    "text",
    ["client1@example.com", "Mike.O'Neil+tag@Mail.Example.ORG", "a@b-c.de", "x{y}@q.io"],
)
def test_common_addresses_take_the_fast_path(text: str) -> None:
    assert contacts._plain_email(text) == _full_check(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "a@xn--bcher-kva.example",
        "a@ab--c.com",
        "Postmaster@example.com",
        "INFO@x.org",
        "a@x.test",
        "a@host.localhost",
        "a@1.2",
        "a@b.c0m",
        "a..b@x.com",
        ".a@x.com",
        "a=?b@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x",
    ],
)
def test_unusual_addresses_take_the_full_path(text: str) -> None:
    assert contacts._plain_email(text) is None


def test_a_role_mailbox_is_stored_as_email_validator_spells_it() -> None:  # R63
    assert normalize_email("Postmaster@Example.com") == _full_check("Postmaster@Example.com")


def test_special_use_domains_added_after_import_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # R62
    assert normalize_email("a@x.example").address == "a@x.example"
    names = [*contacts.email_validator.SPECIAL_USE_DOMAIN_NAMES, "example"]
    monkeypatch.setattr(contacts.email_validator, "SPECIAL_USE_DOMAIN_NAMES", names)
    with pytest.raises(InvalidContact):
        normalize_email("a@x.example")


# -- e-mail: properties -----------------------------------------------------------------------
@given(addresses)
def test_normalize_email_is_idempotent(raw: str) -> None:  # R63
    checked = normalize_email(raw)
    assert normalize_email(checked.address) == checked
    assert normalize_email(checked.key) == (checked.key, checked.key)


@given(st.data(), addresses)
def test_case_whitespace_and_composition_variants_share_one_key(
    data: st.DataObject, raw: str
) -> None:  # R63 R10
    key = normalize_email(raw).key
    swapped = data.draw(case_variants(raw))
    assert normalize_email(swapped).key == key
    padded = data.draw(_whitespace) + swapped + data.draw(_whitespace)
    assert normalize_email(padded).key == key
    assert normalize_email(unicodedata.normalize("NFD", padded)).key == key
    # The Unicode domain and its punycode (as stored) are one contact.
    local, _, _ = raw.rpartition("@")
    ascii_domain = normalize_email(raw).address.rpartition("@")[2]
    assert ascii_domain.isascii()
    assert normalize_email(f"{local}@{ascii_domain}").key == key


@given(st.one_of(st.text(), _near_addresses, addresses))
def test_any_text_is_one_clean_address_or_invalid_contact(value: str) -> None:  # R62 R23
    try:
        checked = normalize_email(value)
    except InvalidContact:
        return
    for text in checked:
        assert text.count("@") == 1
        assert _clean(text)
        assert 3 <= len(text) <= EMAIL_MAX
        assert unicodedata.normalize("NFKC", text) == text
        assert not any(ch in text for ch in ',;<>()"[]\\')
    local, _, domain = checked.address.rpartition("@")
    assert len(local.encode()) <= 64
    assert "=?" not in local
    assert domain.isascii() and domain == domain.lower()
    assert checked.key == f"{local.lower()}@{domain}"


@given(st.data(), addresses, st.sampled_from(_HOSTILE_CHARS))
def test_a_hostile_character_inside_an_address_is_rejected(
    data: st.DataObject, raw: str, hostile: str
) -> None:  # R62
    at = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
    with pytest.raises(InvalidContact):
        normalize_email(raw[:at] + hostile + raw[at:])


# -- send throttle key ------------------------------------------------------------------------
def test_send_key_strips_plus_tags_but_identity_keeps_them() -> None:  # R15 R63
    first = normalize_email("victim+1@example.com")
    second = normalize_email("Victim+2@Example.COM")
    plain = normalize_email("victim@example.com")
    assert len({first.key, second.key, plain.key}) == 3
    assert email_send_key(first.key) == email_send_key(second.key) == plain.key
    assert email_send_key("victim+a+b@example.com") == "victim@example.com"
    assert email_send_key("m.i.k.e@gmail.com") == "m.i.k.e@gmail.com"  # dots are kept


@given(
    addresses, st.text(st.sampled_from(string.ascii_letters + string.digits + "+-_"), max_size=12)
)
def test_every_plus_tag_lands_in_one_send_bucket(raw: str, tag: str) -> None:  # R15
    local, _, domain = raw.rpartition("@")
    base = normalize_email(raw).key
    tagged = normalize_email(f"{local}+{tag}@{domain}").key
    assert email_send_key(tagged) == email_send_key(base)
    assert email_send_key(tagged).rpartition("@")[2] == base.rpartition("@")[2]


# -- phone: examples --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "+14155550123",
        "+1 415-555-0123",
        "+1 (415) 555-0123",
        "(415) 555 0123",
        "415.555.0123",
        "415-555-0123",
        "1 415 555 0123",
        "  4155550123  ",
        "＋１ ４１５ ５５５ ０１２３",  # fullwidth digits and plus
        "４１５５５５０１２３",
        "(４１５) ５５５-０１２３",
    ],
)
def test_common_formats_give_one_e164_number(value: str) -> None:  # R64 R10
    assert normalize_phone(value, "US") == "+14155550123"


def test_a_uk_number_in_the_gb_region() -> None:  # R64
    assert normalize_phone("020 7946 0018", "GB") == "+442079460018"
    assert normalize_phone("+44 20 7946 0018", "GB") == "+442079460018"
    assert normalize_phone("+44 20 7946 0018", "US") == "+442079460018"
    # The region decides how a national number is read.
    with pytest.raises(InvalidContact):
        normalize_phone("020 7946 0018", "US")
    assert normalize_phone("0014155550123", "GB") == "+14155550123"  # 00 is the UK's IDD


@pytest.mark.parametrize(
    "value",
    [
        # letters (vanity numbers, a letter O for a zero, tel: URIs)
        "1-800-FLOWERS",
        "415-555-O123",
        "tel:+14155550123",
        "+1 415 555 0123 abc",
        # extensions
        "+14155550123;ext=12",
        "415 555 0123 x12",
        "415 555 0123 ext 12",
        "415-555-0123 ext. 12",
        "415-555-0123#12",
        "415-555-0123,12",
        # other scripts' digits
        "٤١٥٥٥٥٠١٢٣",  # Arabic-Indic
        "۴۱۵۵۵۵۰۱۲۳",  # Persian
        "४१५५५५०१२३",  # Devanagari
        "+١ ٤١٥ ٥٥٥ ٠١٢٣",
        # too short, too long, not a number
        "",
        "   ",
        "+",
        "+0",
        "415",
        "4155",
        "555-0123",
        "+1 415",
        "+1234567890123456",
        "+1 415 555 01234",
        "4" * 40,
        "++14155550123",
        # invalid numbers
        "+1 555 555 5555",
        "123-456-7890",
        "+1 011 555 0123",
        "+999 1234 5678",
        # control and invisible characters inside
        "+1 415 555 0123\n9",
        "+1 415\r\n555 0123",
        "+1 415 555 0123\x00",
        "+1 415 555\u200b0123",
        "+1 415 555\u202e0123",
        "+1\t415 555 0123",
    ],
)
def test_letters_extensions_foreign_digits_and_bad_lengths_are_rejected(
    value: str,
) -> None:  # R64
    with pytest.raises(InvalidContact) as raised:
        normalize_phone(value, "US")
    assert raised.value.field == "phone"


@pytest.mark.parametrize(
    "value", [None, 4155550123, 1.5, ["+14155550123"], ("+14155550123",), {"phone": "x"}, b"+1"]
)
def test_non_string_phones_are_rejected(value: object) -> None:  # R23
    with pytest.raises(InvalidContact):
        normalize_phone(value, "US")


def test_the_phone_length_cap_comes_before_the_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # R22
    def parser_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("phonenumbers ran on oversized input")

    monkeypatch.setattr(contacts.phonenumbers, "parse", parser_called)
    for value in ["4" * 1_000_000, "+1 415 555 0123" + "0" * 100, "１" * 100]:
        with pytest.raises(InvalidContact):
            normalize_phone(value, "US")


# -- phone: properties ------------------------------------------------------------------------
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
_TYPES = (
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
)


def _example_numbers() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    found = []
    for region in _REGIONS:
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None and phonenumbers.is_valid_number(number):
                found.append((region, number))
    return found


_EXAMPLES = _example_numbers()


@given(st.sampled_from(_EXAMPLES), st.sampled_from(_REGIONS))
def test_normalize_phone_is_idempotent_on_e164(
    example: tuple[str, phonenumbers.PhoneNumber], region: str
) -> None:  # R64
    home, number = example
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(e164, region) == e164
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert normalize_phone(international, region) == e164
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert normalize_phone(national, home) == e164


@given(
    st.one_of(
        st.text(),
        st.text(st.sampled_from([*"0123456789+()-. ", "x", "#", "\n", "١", "１"]), max_size=40),
    ),
    st.sampled_from(["US", "GB", "DE", "IN", "JP", "FR", "BR"]),
)
def test_any_text_is_an_e164_number_or_invalid_contact(value: str, region: str) -> None:  # R64
    try:
        e164 = normalize_phone(value, region)
    except InvalidContact:
        return
    assert _E164.fullmatch(e164)
    assert normalize_phone(e164, region) == e164


# -- masking ----------------------------------------------------------------------------------
def test_masks_reveal_little() -> None:  # R65
    assert mask_email("jane.roe@example.com") == "j•••@example.com"
    masked = mask_phone("+14155550123")
    assert masked.endswith("0123")
    assert set(masked[:-4]) == {"•"}
    assert "415" not in masked


@given(addresses)
def test_mask_email_shows_at_most_the_first_local_character(raw: str) -> None:  # R65
    address = normalize_email(raw).address
    local, _, domain = address.rpartition("@")
    masked = mask_email(address)
    assert masked == f"{local[0]}•••@{domain}"
    assert len(masked.rpartition("@")[0]) == 4  # the local part's length is hidden too


@given(st.sampled_from(_EXAMPLES))
def test_mask_phone_shows_at_most_the_last_four_digits(
    example: tuple[str, phonenumbers.PhoneNumber],
) -> None:  # R65
    e164 = phonenumbers.format_number(example[1], phonenumbers.PhoneNumberFormat.E164)
    masked = mask_phone(e164)
    assert masked.endswith(e164[-4:])
    assert sum(ch.isdigit() for ch in masked) == 4
    assert "+" not in masked
