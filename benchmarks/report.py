"""What is compared with what, and the Markdown report.

Every flow is compared with the raw limit of its store (and, on the in-process stores, with the
peers), as a ratio of ops/s: higher is better. The targets are issue 8's, checked on the
1-thread rows, whose ratios come from block-interleaved runs of the flow and its limit (see
``measure.measure_blocks``); the 8-thread and 4-process ratios are of separate runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from measure import Result, fmt_ms, fmt_rate
from signins import FLOWS

THREADS = 8
PROCESSES = 4
MODES = ("1t", f"{THREADS}t", f"{PROCESSES}p")

# Raw limits and peers (also the names of their results).
HMAC = "raw: HMAC-SHA256 sign+verify"
CODE = "raw: secrets 6-digit code"
ITSD = "raw: itsdangerous dumps+loads"
ARGON = "raw: argon2-cffi verify (OWASP)"
HASHER = "portalauth PasswordHasher.verify"
SQ_TXN = "raw: SQLite txn I+U+S"
SQ_PAIR = "raw: SQLite txn pair"
SQ_SELECT = "raw: SQLite primary-key SELECT"
PG_RT = "raw: PostgreSQL round trip (PK SELECT)"
PG_PAIR = "raw: PostgreSQL insert txn + consume txn"
RD_RT = "raw: Redis round trip (GET)"
RD_PAIR = "raw: Redis SET+GETDEL"
RD_PIPE = "raw: Redis SET+GETDEL pipelined"
SESAME = "peer: django-sesame create+verify (single-use)"
SESAME_DEFAULT = "peer: django-sesame create+verify (defaults)"
OTP = "peer: django-otp EmailDevice generate+verify"

#: Per store: the raw limit of a whole sign-in, of a start (or a PIN issue), of a validation.
LIMITS = {
    "memory": (ITSD, ITSD, HMAC),
    "sqlite": (SQ_PAIR, SQ_TXN, SQ_SELECT),
    "postgres": (PG_PAIR, PG_RT, PG_RT),
    "redis": (RD_PAIR, RD_RT, RD_RT),
}
#: Issue 8's targets, on the 1-thread rows.
WHOLE_TARGETS = {"memory": 0.5, "sqlite": 0.30, "redis": 0.5}  # whole code sign-in ÷ raw
VALIDATE_TARGETS = {"sqlite": 0.5}  # session validation ÷ raw primary-key SELECT
PASSWORD_TARGET = 0.95  # password sign-in ÷ raw argon2-cffi verify, same parameters
SESAME_TARGET = 2.0  # SQLite whole code sign-in ÷ django-sesame create + verify
IN_PROCESS = ("memory", "sqlite")  # the stores the peers (Django on SQLite) are shown against


def flow_name(store: str, method: str, label: str) -> str:
    return f"{store}: {method} {label}"


def validate_name(store: str) -> str:
    return f"{store}: session validate"


@dataclass(frozen=True)
class Comparison:
    flow: str
    limit: str
    target: float | None = None  # flow ÷ limit, 1 thread
    sesame_target: float | None = None  # flow ÷ django-sesame, 1 thread
    peers: bool = False  # show the ratios to the peers


def comparisons(store: str) -> list[Comparison]:
    """The store's flows, each with its raw limit and targets."""
    whole_limit, start_limit, validate_limit = LIMITS[store]
    found = []
    for method, flows in FLOWS.items():
        for flow, label in flows:
            name = flow_name(store, method, label)
            if method == "password":
                found.append(Comparison(name, ARGON, PASSWORD_TARGET))
            elif flow == "whole":
                found.append(
                    Comparison(
                        name,
                        whole_limit,
                        WHOLE_TARGETS.get(store),
                        SESAME_TARGET if store == "sqlite" else None,
                        store in IN_PROCESS,
                    )
                )
            else:
                found.append(Comparison(name, start_limit))
    found.append(Comparison(validate_name(store), validate_limit, VALIDATE_TARGETS.get(store)))
    return found


EXTRA = [Comparison(HASHER, ARGON, PASSWORD_TARGET), Comparison(RD_PIPE, RD_PAIR)]


def numbers_table(results: dict[tuple[str, str], Result]) -> list[str]:
    lines = [
        "| measurement | 1 thread ops/s | p50 ms | p99 ms | 8 threads ops/s | p50 ms | p99 ms"
        " | 4 processes ops/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(name for name, _ in results):
        cells = []
        for mode in MODES:
            res = results.get((name, mode))
            if res is None:
                cells += ["", "", ""]
            else:
                cells += [fmt_rate(res.rate), fmt_ms(res.p50), fmt_ms(res.p99)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def verdict(ratio: float, target: float) -> str:
    if ratio >= target:
        return f"met ({ratio:.3g} ≥ {target:g})"
    short = target / ratio
    factor = f"{short:.2f}" if short < 10 else f"{short:.1f}"
    return (
        f"**missed**: {ratio:.3g}, target ≥ {target:g}: {ratio / target:.0%} of the target,"
        f" {factor}x short"
    )


def ratio_table(
    results: dict[tuple[str, str], Result],
    paired: dict[tuple[str, str], float],
    rows: list[Comparison],
) -> tuple[list[str], list[str]]:
    """The ratio table, and one line per target: met, or missed and by how much."""

    def ratio(flow: str, other: str, mode: str) -> float | None:
        if mode == "1t" and (flow, other) in paired:
            return paired[flow, other]
        a, b = results.get((flow, mode)), results.get((other, mode))
        if a is None or b is None or not b.rate:
            return None
        return a.rate / b.rate

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    lines = [
        "| flow | raw limit | ÷ raw 1t | ÷ raw 8t | ÷ raw 4p | ÷ django-sesame 1t"
        " | ÷ django-otp 1t | target (1 thread) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    checks = []
    for row in rows:
        if (row.flow, "1t") not in results and (row.flow, f"{THREADS}t") not in results:
            continue
        r1, r8, r4 = (ratio(row.flow, row.limit, mode) for mode in MODES)
        vs_sesame = ratio(row.flow, SESAME, "1t") if row.peers else None
        vs_otp = ratio(row.flow, OTP, "1t") if row.peers else None
        targets = []
        if row.target is not None:
            targets.append(f"≥ {row.target:g} of raw")
            if r1 is not None:
                checks.append(f"- {row.flow} ÷ {row.limit}: {verdict(r1, row.target)}")
        if row.sesame_target is not None:
            targets.append(f"≥ {row.sesame_target:g}x django-sesame")
            if vs_sesame is not None:
                checks.append(f"- {row.flow} ÷ {SESAME}: {verdict(vs_sesame, row.sesame_target)}")
        lines.append(
            f"| {row.flow} | {row.limit} | {cell(r1)} | {cell(r8)} | {cell(r4)}"
            f" | {cell(vs_sesame)} | {cell(vs_otp)} | {'; '.join(targets)} |"
        )
    return lines, checks
