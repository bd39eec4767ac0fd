"""The subscription state machine: every transition, illegal transitions, ordering and the
order-independence property, plus the REDETV!PLUS payload schema and its translation."""

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from festival.domain.subscriptions import (
    ChargeChargedBack,
    ChargeFailed,
    ChargePaid,
    ChargeRefunded,
    Fact,
    PeriodEndChecked,
    SubscriptionCancelled,
    SubscriptionCreated,
    SubscriptionReactivated,
    SubscriptionRenewed,
    SubscriptionState,
    SubscriptionSuspended,
    apply,
    entitlement,
    fact_from_json,
    fact_to_json,
    paid_until,
    replay,
    state_from_json,
    state_to_json,
)
from schemas.redetv import RedetvWebhook, to_fact

REF = "sub-1"
USER = "user-1"
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
PAID_END = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
PRICE = Decimal("29.90")


def created(at: datetime = T0, event_id: str = "created", user_id: str = USER) -> SubscriptionCreated:
    return SubscriptionCreated(REF, event_id, at, user_id, "mensal")


def renewed(at: datetime, event_id: str = "renewed") -> SubscriptionRenewed:
    return SubscriptionRenewed(REF, event_id, at, USER, "mensal")


def suspended(at: datetime, event_id: str = "suspended") -> SubscriptionSuspended:
    return SubscriptionSuspended(REF, event_id, at, USER, "mensal")


def reactivated(at: datetime, event_id: str = "reactivated") -> SubscriptionReactivated:
    return SubscriptionReactivated(REF, event_id, at, USER, "mensal")


def cancelled(at: datetime, event_id: str = "cancelled") -> SubscriptionCancelled:
    return SubscriptionCancelled(REF, event_id, at, USER, "mensal")


def paid(at: datetime, charge: str = "ch-1", amount: Decimal = PRICE) -> ChargePaid:
    return ChargePaid(REF, f"paid-{charge}", at, charge, amount)


def failed(at: datetime, charge: str = "ch-9") -> ChargeFailed:
    return ChargeFailed(REF, f"failed-{charge}", at, charge, "cartão recusado")


def refunded(at: datetime, charge: str = "ch-1", amount: Decimal = PRICE, status: str = "DEVOLVIDO") -> ChargeRefunded:
    return ChargeRefunded(REF, f"refund-{charge}-{status}", at, charge, f"rf-{charge}", amount, status)  # type: ignore[arg-type]


def chargeback(at: datetime, charge: str = "ch-1") -> ChargeChargedBack:
    return ChargeChargedBack(REF, f"cb-{charge}", at, charge, f"cb-{charge}", PRICE)


def checked(at: datetime) -> PeriodEndChecked:
    return PeriodEndChecked(REF, f"check-{at.isoformat()}", at)


def build(*facts: Fact) -> SubscriptionState:
    state, _ = replay(facts)
    assert state is not None
    return state


DAY = timedelta(days=1)
SETUPS: dict[str, tuple[Fact, ...]] = {
    "pending_payment": (created(),),
    "active": (created(), paid(T0)),
    "past_due": (created(), paid(T0), checked(PAID_END + DAY)),
    "suspended": (created(), paid(T0), suspended(T0 + 5 * DAY)),
    "cancelled": (created(), paid(T0), cancelled(T0 + 5 * DAY)),
    "expired": (created(), paid(T0), checked(PAID_END + 4 * DAY)),
}

TRANSITIONS = [
    ("pending_payment", paid(T0 + DAY), "active"),
    ("pending_payment", failed(T0 + DAY), "pending_payment"),
    ("pending_payment", cancelled(T0 + DAY), "cancelled"),
    ("pending_payment", suspended(T0 + DAY), "suspended"),
    ("active", paid(T0 + 20 * DAY, "ch-2"), "active"),
    ("active", renewed(PAID_END), "past_due"),
    ("active", checked(PAID_END + DAY), "past_due"),
    ("active", checked(PAID_END + 4 * DAY), "expired"),
    ("active", failed(PAID_END + DAY), "past_due"),
    ("active", suspended(T0 + DAY), "suspended"),
    ("active", cancelled(T0 + DAY), "cancelled"),
    ("active", refunded(T0 + DAY), "pending_payment"),
    ("active", refunded(T0 + DAY, amount=Decimal("10.00")), "active"),
    ("active", chargeback(T0 + DAY), "pending_payment"),
    ("past_due", paid(PAID_END + 2 * DAY, "ch-2"), "active"),
    ("past_due", failed(PAID_END + 2 * DAY), "past_due"),
    ("past_due", checked(PAID_END + 3 * DAY), "expired"),
    ("past_due", cancelled(PAID_END + 2 * DAY), "expired"),
    ("suspended", reactivated(T0 + 6 * DAY), "active"),
    ("suspended", cancelled(T0 + 6 * DAY), "cancelled"),
    ("suspended", paid(T0 + 6 * DAY, "ch-2"), "suspended"),
    ("suspended", checked(PAID_END + 10 * DAY), "suspended"),
    ("cancelled", checked(PAID_END - DAY), "cancelled"),
    ("cancelled", checked(PAID_END), "expired"),
    ("cancelled", paid(T0 + 6 * DAY, "ch-2"), "cancelled"),
    ("expired", paid(PAID_END + 5 * DAY, "ch-2"), "active"),
    ("expired", reactivated(PAID_END + 5 * DAY), "expired"),
    ("expired", cancelled(PAID_END + 5 * DAY), "expired"),
]


@pytest.mark.parametrize(("start", "fact", "expected"), TRANSITIONS, ids=lambda value: getattr(value, "event_id", value))
def test_transition(start: str, fact: Fact, expected: str) -> None:
    state = build(*SETUPS[start])
    assert state.status == start

    decision = apply(state, fact)

    assert decision.state is not None
    assert decision.state.status == expected
    assert decision.changed
    assert decision.illegal is None
    assert decision.state.version == state.version + 1


@pytest.mark.parametrize(
    ("start", "fact"),
    [
        ("cancelled", renewed(T0 + 6 * DAY)),
        ("cancelled", reactivated(T0 + 6 * DAY)),
        ("cancelled", suspended(T0 + 6 * DAY)),
        ("cancelled", created(T0 + 6 * DAY, "created-again")),
        ("active", renewed(T0 + DAY).__class__(REF, "renewed-other-user", T0 + DAY, "user-2", "mensal")),
        ("active", PeriodEndChecked("sub-2", "check-other", T0 + DAY)),
    ],
    ids=["renewed", "reactivated", "suspended", "created", "other_user", "other_subscription"],
)
def test_illegal_transition(start: str, fact: Fact) -> None:
    state = build(*SETUPS[start])

    decision = apply(state, fact)

    assert decision.illegal is not None
    assert decision.illegal.event_id == fact.event_id
    assert decision.illegal.from_status == start
    assert not decision.changed
    assert decision.state == state


def test_created_state_fields() -> None:
    state = build(created(), paid(T0))

    assert state.plan == "mensal"
    assert state.user_id == USER
    assert state.current_period_end == PAID_END
    assert state.last_event_at == T0
    assert state.access
    assert state.until == PAID_END
    assert state.version == 2


def test_renewed_before_created() -> None:
    first = apply(None, renewed(T0 + DAY))
    assert first.state is not None
    assert first.state.status == "pending_payment"

    second = apply(first.state, created(T0))

    assert second.state is not None
    assert second.state.last_event_at == T0 + DAY
    assert second.state.status == "pending_payment"
    assert second.state.evidence.mark("renewed") == first.state.evidence.mark("renewed")


def test_cancelled_twice() -> None:
    state = build(*SETUPS["cancelled"])

    decision = apply(state, cancelled(T0 + 5 * DAY))

    assert not decision.changed
    assert decision.state == state


def test_cancelled_later_again() -> None:
    state = build(*SETUPS["cancelled"])

    decision = apply(state, cancelled(T0 + 8 * DAY, "cancelled-again"))

    assert not decision.changed
    assert decision.illegal is None


def test_older_event_keeps_newer_state() -> None:
    state = build(created(), paid(T0), suspended(T0 + 5 * DAY), reactivated(T0 + 7 * DAY))

    decision = apply(state, suspended(T0 + 2 * DAY, "suspended-older"))

    assert decision.state is not None
    assert decision.state.status == "active"
    assert not decision.changed


def test_payment_before_created_holds() -> None:
    decision = apply(None, paid(T0))

    assert decision.hold
    assert decision.state is None
    assert not decision.changed


def test_held_payment_applied_later() -> None:
    state, decisions = replay([paid(T0), created(T0 - DAY)])

    assert decisions[0].hold
    assert state is not None
    assert state.status == "active"
    assert state.current_period_end == PAID_END


def test_refund_after_renewal() -> None:
    state = build(created(), paid(T0), renewed(PAID_END), paid(PAID_END, "ch-2"))
    assert state.current_period_end == PAID_END + relativedelta_month()

    decision = apply(state, refunded(PAID_END + 5 * DAY, "ch-2"))

    assert decision.state is not None
    assert decision.state.current_period_end == PAID_END
    assert decision.state.status == "expired"
    assert not decision.state.access


def relativedelta_month() -> timedelta:
    return datetime(2026, 3, 10, 12, tzinfo=UTC) - PAID_END


def test_refund_in_processing_changes_nothing() -> None:
    state = build(*SETUPS["active"])

    decision = apply(state, refunded(T0 + DAY, status="EM_PROCESSAMENTO"))

    assert not decision.changed


def test_payment_extends_from_period_end() -> None:
    state = build(created(), paid(T0), paid(T0 + 10 * DAY, "ch-2"))

    assert state.current_period_end == datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_payment_after_lapse_starts_new_period() -> None:
    late = PAID_END + 6 * DAY
    state = build(created(), paid(T0), paid(late, "ch-2"))

    assert state.current_period_end == datetime(2026, 3, 16, 12, tzinfo=UTC)


def test_month_end_does_not_drift() -> None:
    start = datetime(2026, 1, 31, 9, tzinfo=UTC)
    payments = [paid(start, "a"), paid(start + 20 * DAY, "b"), paid(start + 50 * DAY, "c")]
    state = build(SubscriptionCreated(REF, "c", start, USER, "mensal"), *payments)

    assert state.current_period_end == datetime(2026, 4, 30, 9, tzinfo=UTC)


def test_annual_plan_pays_twelve_months() -> None:
    state = build(SubscriptionCreated(REF, "c", T0, USER, "anual"), paid(T0))

    assert state.current_period_end == datetime(2027, 1, 10, 12, tzinfo=UTC)


def test_pix_and_nix_confirm_one_charge() -> None:
    state = build(created(), paid(T0 + DAY), ChargePaid(REF, "pix-callback", T0, "ch-1", PRICE))

    assert paid_until(state.evidence, "mensal") == PAID_END
    assert len(state.evidence.payments) == 1


def test_grace_period_configurable() -> None:
    state = build(*SETUPS["active"])

    decision = apply(state, checked(PAID_END + DAY), grace_period=timedelta(hours=12))

    assert decision.state is not None
    assert decision.state.status == "expired"


@pytest.mark.parametrize(
    ("start", "now", "active", "until", "reason"),
    [
        ("pending_payment", T0, False, T0, "pending_payment"),
        ("active", T0 + DAY, True, PAID_END, "paid"),
        ("active", PAID_END + DAY, True, PAID_END + 3 * DAY, "grace_period"),
        ("active", PAID_END + 3 * DAY, False, PAID_END + 3 * DAY, "expired"),
        ("suspended", T0 + 6 * DAY, False, T0 + 5 * DAY, "suspended"),
        ("cancelled", T0 + 6 * DAY, True, PAID_END, "cancelled_until_period_end"),
        ("cancelled", PAID_END, False, PAID_END, "expired"),
    ],
)
def test_entitlement(start: str, now: datetime, active: bool, until: datetime, reason: str) -> None:
    state = build(*SETUPS[start])

    result = entitlement(state, now)

    assert result.active is active
    assert result.until == until
    assert result.reason == reason


def test_entitlement_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        entitlement(build(*SETUPS["active"]), datetime(2026, 1, 1))


def test_state_json_round_trip() -> None:
    state = build(created(), paid(T0), refunded(T0 + DAY, amount=Decimal("1.00")), suspended(T0 + 2 * DAY))

    assert state_from_json(state_to_json(state)) == state


def test_fact_json_round_trip() -> None:
    fact = refunded(T0)

    assert fact_from_json(fact_to_json(fact)) == fact


# ---------------------------------------------------------------------------------------------
# Order independence.

LIFECYCLE = {
    "renewed": SubscriptionRenewed,
    "suspended": SubscriptionSuspended,
    "reactivated": SubscriptionReactivated,
    "cancelled": SubscriptionCancelled,
}


@st.composite
def histories(draw: st.DrawFn) -> list[Fact]:
    """A partner's history of one subscription: lifecycle events, payments, reversals and checks,
    some of them sent twice, with ties in time and the odd event after a cancellation."""
    plan = draw(st.sampled_from(["mensal", "anual"]))
    moment = T0
    facts: list[Fact] = [SubscriptionCreated(REF, "e0", moment, USER, plan)]
    charges: list[str] = []

    for index in range(1, draw(st.integers(1, 14)) + 1):
        moment += timedelta(hours=draw(st.integers(0, 24 * 35)))
        kind = draw(st.sampled_from([*LIFECYCLE, "paid", "paid_again", "failed", "refunded", "partial", "chargeback", "checked"]))
        event_id = f"e{index}"

        if kind in LIFECYCLE:
            facts.append(LIFECYCLE[kind](REF, event_id, moment, USER, plan))
        elif kind == "paid" or (kind == "paid_again" and not charges):
            charges.append(f"ch-{index}")
            facts.append(ChargePaid(REF, event_id, moment, charges[-1], PRICE))
        elif kind == "paid_again":
            facts.append(ChargePaid(REF, event_id, moment, draw(st.sampled_from(charges)), PRICE))
        elif kind == "failed":
            facts.append(ChargeFailed(REF, event_id, moment, f"ch-{index}"))
        elif kind in ("refunded", "partial") and charges:
            amount = PRICE if kind == "refunded" else Decimal("5.00")
            facts.append(ChargeRefunded(REF, event_id, moment, draw(st.sampled_from(charges)), f"rf-{index}", amount, "DEVOLVIDO"))
        elif kind == "chargeback" and charges:
            facts.append(ChargeChargedBack(REF, event_id, moment, draw(st.sampled_from(charges)), f"cb-{index}", PRICE))
        else:
            facts.append(PeriodEndChecked(REF, event_id, moment))

    duplicates = draw(st.lists(st.sampled_from(facts), max_size=4))
    return facts + duplicates


def logical(state: SubscriptionState | None) -> SubscriptionState | None:
    """Return the state without `version`, which counts one replica's steps and so depends on order."""
    return replace(state, version=0) if state is not None else None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), seed=st.randoms(use_true_random=False))
def test_order_independent(history: list[Fact], seed: random.Random) -> None:
    in_order, _ = replay(history)
    shuffled = list(history)
    seed.shuffle(shuffled)

    final, _ = replay(shuffled)

    assert logical(final) == logical(in_order)


@settings(max_examples=200, deadline=None)
@given(history=histories())
def test_duplicates_change_nothing(history: list[Fact]) -> None:
    state, _ = replay(history)
    assert state is not None

    decisions = [apply(state, fact) for fact in history]

    assert not any(decision.changed for decision in decisions)


# ---------------------------------------------------------------------------------------------
# REDETV!PLUS payload.

PAYLOAD = {
    "event_id": "evt-1",
    "event": "subscription.renewed",
    "occurred_at": "2026-01-10T09:00:00-03:00",
    "subscription": {
        "id": REF,
        "user_id": USER,
        "plan": "anual",
        "status": "active",
        "current_period_end": "2027-01-10T09:00:00-03:00",
        "coupon": "VERAO",
    },
    "user": {"id": USER, "name": "Maria da Silva", "email": "maria@example.com", "cpf": "12345678909", "phone": "+5511999990000", "birth_date": "1990-05-01"},
    "channel": "app",
}


def test_webhook_translates_to_fact() -> None:
    fact = to_fact(RedetvWebhook.model_validate(PAYLOAD))

    assert fact == SubscriptionRenewed(REF, "evt-1", T0, USER, "anual", datetime(2027, 1, 10, 12, tzinfo=UTC))


def test_webhook_user_updated_has_no_fact() -> None:
    webhook = RedetvWebhook.model_validate({**PAYLOAD, "event": "user.updated", "subscription": None})

    assert to_fact(webhook) is None


def test_webhook_hides_personal_data() -> None:
    webhook = RedetvWebhook.model_validate(PAYLOAD)

    for text in (repr(webhook), str(webhook), webhook.model_dump_json()):
        for secret in ("Maria", "maria@example.com", "12345678909", "99999", "1990-05-01"):
            assert secret not in text


def test_webhook_personal_data_for_storage() -> None:
    webhook = RedetvWebhook.model_validate(PAYLOAD)
    assert webhook.user is not None

    assert webhook.user.personal_data()["cpf"] == "12345678909"


def test_webhook_rejects_naive_time() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RedetvWebhook.model_validate({**PAYLOAD, "occurred_at": "2026-01-10T09:00:00"})


def test_webhook_requires_subscription() -> None:
    with pytest.raises(ValidationError, match="requires a `subscription`"):
        RedetvWebhook.model_validate({**PAYLOAD, "subscription": None})


def test_webhook_error_hides_input() -> None:
    with pytest.raises(ValidationError) as error:
        RedetvWebhook.model_validate({**PAYLOAD, "user": {**PAYLOAD["user"], "id": None}})  # type: ignore[dict-item]

    assert "12345678909" not in str(error.value)


def test_webhook_accepts_unknown_event_fields() -> None:
    webhook = RedetvWebhook.model_validate(PAYLOAD)

    assert webhook.model_extra == {"channel": "app"}
