"""Contacts: how e-mail addresses and phone numbers are checked, canonicalised and masked.

The policy, applied identically in every flow (sign-in, sign-up, reset, invite, throttle keys):

E-mail
    Surrounding whitespace is stripped and the text is put in Unicode NFC. Anything that is
    still not NFKC-stable (fullwidth letters, ligatures, superscripts) is **rejected**, not
    folded, so a look-alike never silently becomes somebody else's address. Control, format and
    space characters inside are rejected. ``email-validator`` checks the syntax (one mailbox: no
    display names, lists, comments, quoted local parts or IP literals; no DNS lookups); the local
    part is at most 64 octets (RFC 5321) and may not contain ``=?``, which header parsers would
    decode as an RFC 2047 encoded word. The
    domain is IDNA-encoded and lowercased. The **key** used for matching and uniqueness is
    ``local.lower() + "@" + ascii_domain``: ``Mike@Example.COM`` and ``mike@example.com`` are one
    contact, ``mike@bücher.example`` and ``mike@xn--bcher-kva.example`` are one contact, while
    ``mıke@`` (dotless i) and ``mike@`` stay different. ``lower()`` rather than ``casefold()``
    because casefolding maps ``ß`` to ``ss`` and would merge mailboxes that differ. Plus-tags and
    dots are part of the identity and are never stripped (throttle keys for *sending* strip
    plus-tags separately: :func:`email_send_key`). Messages always go to the address stored on the
    identity, never to the text a client typed.

Phone
    NFKC (fullwidth digits become ASCII), stripped; only ASCII digits, ``+``, spaces, ``( ) - .``
    are allowed (letters, extensions and other scripts' digits are rejected); parsed with
    ``phonenumbers`` in the portal's default region; must be a valid number; stored as E.164.
"""

from __future__ import annotations

import re
import unicodedata

import email_validator
import email_validator.rfc_constants
import phonenumbers

from .errors import InvalidContact

__all__ = [
    "EMAIL_MAX",
    "PHONE_MAX",
    "Email",
    "email_send_key",
    "is_mobile",
    "looks_like_email",
    "mask_email",
    "mask_phone",
    "normalize_email",
    "normalize_phone",
    "sms_allowed",
    "sms_route",
]

EMAIL_MAX = 254
PHONE_MAX = 32

_PHONE_CHARS = re.compile(r"\+?[0-9 ()\-.]{4,30}", re.ASCII)
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


class Email(tuple[str, str]):
    """A checked e-mail address: ``(address, key)``; ``address`` is what mail is sent to."""

    __slots__ = ()

    @property
    def address(self) -> str:
        return self[0]

    @property
    def key(self) -> str:
        return self[1]


def normalize_email(value: object) -> Email:
    """Check an e-mail address and return its ``(address, key)``; raise :class:`InvalidContact`.

    Idempotent: ``normalize_email(normalize_email(x).address) == normalize_email(x)``.
    """
    if not isinstance(value, str):
        raise InvalidContact(field="email")
    text = value.strip()
    if not text or len(text) > EMAIL_MAX:
        raise InvalidContact(field="email")
    plain = _plain_email(text)
    if plain is not None:
        return plain
    text = unicodedata.normalize("NFC", text)
    if unicodedata.normalize("NFKC", text) != text:
        raise InvalidContact(field="email")
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in text):
        raise InvalidContact(field="email")
    return _validated_email(text)


def _validated_email(text: str) -> Email:
    """The full check of clean (stripped, NFC, no forbidden characters) text: email-validator's
    syntax and IDNA rules, then the local-part rules it does not apply."""
    try:
        checked = email_validator.validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
        )
    except (email_validator.EmailNotValidError, UnicodeError, ValueError):
        raise InvalidContact(field="email") from None
    local = checked.local_part
    # RFC 5321 caps the local part at 64 octets; "=?" would be read as an RFC 2047 encoded word
    # by header parsers downstream (R61).
    if len(local.encode("utf-8")) > 64 or "=?" in local:
        raise InvalidContact(field="email")
    domain = checked.ascii_domain.lower()
    address = f"{local}@{domain}"
    if len(address) > EMAIL_MAX:
        raise InvalidContact(field="email")
    return Email((address, f"{local.lower()}@{domain}"))


# The common case, checked without email-validator (which costs ~25 µs a call, most of a
# sign-in's input handling): an all-ASCII dot-atom local part and a hostname of LDH labels under
# an alphabetic top-level domain. Anything else, including every label with "--" in positions 3-4
# (Punycode and reserved R-LDH labels) and the special-use domains, takes the full path. Only
# addresses the full path accepts with the same result can match (tests/test_contacts.py checks
# that property against email-validator); role mailboxes ("Postmaster@"), whose local part
# email-validator lowercases, take the full path too.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_PLAIN_EMAIL = re.compile(
    rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})",
    re.ASCII,
)


# The role mailboxes email-validator lowercases (2.2 and later; none before).
_ROLE_MAILBOXES = frozenset(
    getattr(email_validator.rfc_constants, "CASE_INSENSITIVE_MAILBOX_NAMES", ())
)


def _plain_email(text: str) -> Email | None:
    """The checked address for a plain ASCII address, or ``None`` to take the full path."""
    found = _PLAIN_EMAIL.fullmatch(text)
    if found is None:
        return None
    local, domain = found.groups()
    if len(local) > 64 or "=?" in local or len(domain) > 253 or "--" in domain:
        return None
    if local.lower() in _ROLE_MAILBOXES:
        return None  # email-validator lowercases these ("Postmaster@" is "postmaster@")
    domain = domain.lower()
    # Read on every call: an application may extend email-validator's list after import.
    if any(
        domain == d or domain.endswith("." + d) for d in email_validator.SPECIAL_USE_DOMAIN_NAMES
    ):
        return None
    return Email((f"{local}@{domain}", f"{local.lower()}@{domain}"))


def email_send_key(key: str) -> str:
    """The bucket for *send* throttles: the key without its ``+tag`` (tags must not flood one
    inbox)."""
    local, _, domain = key.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def looks_like_email(value: str) -> bool:
    """Whether a contact field should be read as an e-mail address (it has an ``@``)."""
    return "@" in value


def normalize_phone(value: object, region: str) -> str:
    """Check a phone number typed in any common format; return E.164 or raise InvalidContact."""
    if not isinstance(value, str) or len(value) > PHONE_MAX * 4:
        raise InvalidContact(field="phone")
    text = unicodedata.normalize("NFKC", value).strip()
    if len(text) > PHONE_MAX or not _PHONE_CHARS.fullmatch(text):
        raise InvalidContact(field="phone")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidContact(field="phone") from None
    if number.extension or not phonenumbers.is_valid_number(number):
        raise InvalidContact(field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def is_mobile(e164: str) -> bool:
    """Whether a stored E.164 number is of a type that receives SMS (mobile, or a region's
    shared fixed-line-or-mobile range such as the US): never premium-rate, shared-cost,
    toll-free, VoIP, pager or unknown types (R16)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and (
        phonenumbers.number_type(number) in _MOBILE_TYPES
    )


def sms_allowed(e164: str, countries: frozenset[str]) -> bool:
    """Whether portalauth may send an SMS to ``e164``: a mobile number (:func:`is_mobile`) of one
    of ``countries`` (the portal's ``sms_countries`` allowlist, R16)."""
    if not is_mobile(e164):
        return False
    number = phonenumbers.parse(e164, None)
    return phonenumbers.region_code_for_number(number) in countries


def sms_route(e164: str) -> tuple[str, str]:
    """``(country, prefix)`` of a number: its region code (``"ZZ"`` if unknown) and the number
    without its last four digits, the unit SMS-pumping ranges come in (R16, R17)."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)) or "ZZ"
    except phonenumbers.NumberParseException:
        region = "ZZ"
    return region, e164[:-4]


def mask_email(address: str) -> str:
    """``jane.roe@example.com`` → ``j•••@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def mask_phone(e164: str) -> str:
    """``+12025550123`` → ``••••••••0123`` (only the last four digits)."""
    return "•" * max(0, len(e164) - 4) + e164[-4:]
