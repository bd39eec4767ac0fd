"""The subscription state machine: pure functions shared by the consumers, the scheduler and the tests.

Partners deliver events late, twice and out of order, so the state is not a running status that
each event edits. It is derived from *evidence* that merges commutatively:

- per REDETV!PLUS event kind, only the latest event by (`occurred_at`, `event_id`) is kept;
- a cancellation is final: the earliest one is kept, lifecycle events before it are dropped and
  lifecycle events after it are illegal transitions;
- NIX payments are kept one per charge and folded into paid periods in `paid_at` order;
- settled refunds (`DEVOLVIDO`) and chargebacks are kept one per refund id and void their charge;
- the scheduler's period-end checks only advance the clock (the latest check time).

Each merge is a max or a set union, so any order of the same events ends in the same evidence and
therefore in the same derived state. Only `version`, which counts the changes one replica applied,
depends on the order. docs/subscriptions.md has the diagram and the full transition table.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal, NamedTuple, TypeAlias

from dateutil.relativedelta import relativedelta
from pydantic import TypeAdapter

from schemas.events import SubscriptionStatus

Plan = Literal["mensal", "anual"]
LifecycleKind = Literal["created", "renewed", "suspended", "reactivated", "cancelled"]

DEFAULT_GRACE_PERIOD = timedelta(days=3)
PLAN_MONTHS: dict[str, int] = {"mensal": 1, "anual": 12}


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Facts: what happened, as reported by a partner or the scheduler.


@dataclass(frozen=True)
class _Fact:
    subscription_ref: str
    event_id: str
    occurred_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", _utc(self.occurred_at, "occurred_at"))


@dataclass(frozen=True)
class _LifecycleFact(_Fact):
    user_id: str
    plan: Plan
    # The partner's own view of the period; informational, because paid periods come from NIX.
    current_period_end: datetime | None = None

    KIND: ClassVar[LifecycleKind]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.current_period_end is not None:
            object.__setattr__(self, "current_period_end", _utc(self.current_period_end, "current_period_end"))


@dataclass(frozen=True)
class SubscriptionCreated(_LifecycleFact):
    KIND: ClassVar[LifecycleKind] = "created"


@dataclass(frozen=True)
class SubscriptionRenewed(_LifecycleFact):
    KIND: ClassVar[LifecycleKind] = "renewed"


@dataclass(frozen=True)
class SubscriptionSuspended(_LifecycleFact):
    KIND: ClassVar[LifecycleKind] = "suspended"


@dataclass(frozen=True)
class SubscriptionReactivated(_LifecycleFact):
    KIND: ClassVar[LifecycleKind] = "reactivated"


@dataclass(frozen=True)
class SubscriptionCancelled(_LifecycleFact):
    KIND: ClassVar[LifecycleKind] = "cancelled"


@dataclass(frozen=True)
class ChargePaid(_Fact):
    """NIX confirmed a payment; `occurred_at` is when it was paid."""

    charge_id: str
    amount: Decimal


@dataclass(frozen=True)
class ChargeFailed(_Fact):
    charge_id: str
    reason: str | None = None


@dataclass(frozen=True)
class ChargeRefunded(_Fact):
    """A refund changed state; only `DEVOLVIDO` means the money went back."""

    charge_id: str
    refund_id: str
    amount: Decimal
    status: Literal["EM_PROCESSAMENTO", "DEVOLVIDO", "NAO_REALIZADO"]


@dataclass(frozen=True)
class ChargeChargedBack(_Fact):
    charge_id: str
    refund_id: str
    amount: Decimal


@dataclass(frozen=True)
class PeriodEndChecked(_Fact):
    """The scheduler looked at the subscription at `occurred_at`."""


LifecycleFact: TypeAlias = (
    SubscriptionCreated
    | SubscriptionRenewed
    | SubscriptionSuspended
    | SubscriptionReactivated
    | SubscriptionCancelled
)
PaymentFact: TypeAlias = ChargePaid | ChargeFailed | ChargeRefunded | ChargeChargedBack
Fact: TypeAlias = LifecycleFact | PaymentFact | PeriodEndChecked

FACT_NAMES: dict[type[Any], str] = {
    SubscriptionCreated: "created",
    SubscriptionRenewed: "renewed",
    SubscriptionSuspended: "suspended",
    SubscriptionReactivated: "reactivated",
    SubscriptionCancelled: "cancelled",
    ChargePaid: "payment_confirmed",
    ChargeFailed: "payment_failed",
    ChargeRefunded: "payment_refunded",
    ChargeChargedBack: "payment_charged_back",
    PeriodEndChecked: "period_end_checked",
}


# ---------------------------------------------------------------------------------------------
# Evidence and state.


@dataclass(frozen=True, order=True)
class LifecycleMark:
    """The latest REDETV!PLUS event of one kind; ordered by (`occurred_at`, `event_id`)."""

    occurred_at: datetime
    event_id: str
    kind: LifecycleKind
    user_id: str
    plan: Plan
    partner_period_end: datetime | None


@dataclass(frozen=True)
class Payment:
    charge_id: str
    paid_at: datetime
    amount: Decimal


@dataclass(frozen=True)
class Reversal:
    """A settled refund or a chargeback of one charge."""

    refund_id: str
    charge_id: str
    kind: Literal["refund", "chargeback"]
    amount: Decimal
    occurred_at: datetime


@dataclass(frozen=True)
class Evidence:
    """Everything the derived state depends on, in a canonical form (sorted, one entry per key)."""

    marks: tuple[LifecycleMark, ...] = ()
    payments: tuple[Payment, ...] = ()
    reversals: tuple[Reversal, ...] = ()
    last_failure_at: datetime | None = None
    checked_at: datetime | None = None

    def mark(self, kind: LifecycleKind) -> LifecycleMark | None:
        return next((mark for mark in self.marks if mark.kind == kind), None)


@dataclass(frozen=True)
class SubscriptionState:
    subscription_ref: str
    status: SubscriptionStatus
    plan: Plan
    user_id: str
    current_period_end: datetime | None  # end of the paid period; None until the first payment
    version: int
    last_event_at: datetime
    access: bool
    until: datetime
    evidence: Evidence


class Entitlement(NamedTuple):
    active: bool
    until: datetime
    reason: str


@dataclass(frozen=True)
class IllegalTransition:
    """A fact that the rules reject; the caller stores it for review and applies nothing."""

    subscription_ref: str
    event_id: str
    from_status: SubscriptionStatus | None
    fact: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class Decision:
    """The result of `apply`: the state to store, or a hold, or an illegal transition."""

    state: SubscriptionState | None
    changed: bool
    transition: str
    reason: str
    previous_status: SubscriptionStatus | None = None
    illegal: IllegalTransition | None = None
    hold: bool = False

    @property
    def status_changed(self) -> bool:
        return self.state is not None and self.state.status != self.previous_status


# ---------------------------------------------------------------------------------------------
# Deriving the state from the evidence.


def _voided_charges(evidence: Evidence) -> set[str]:
    amounts = {payment.charge_id: payment.amount for payment in evidence.payments}
    refunded: dict[str, Decimal] = {}
    voided: set[str] = set()
    for reversal in evidence.reversals:
        if reversal.kind == "chargeback":
            voided.add(reversal.charge_id)
        refunded[reversal.charge_id] = refunded.get(reversal.charge_id, Decimal(0)) + reversal.amount

    # A partial refund keeps the period; only the whole amount returned voids the payment.
    for charge_id, total in refunded.items():
        if charge_id in amounts and total >= amounts[charge_id]:
            voided.add(charge_id)
    return voided


def paid_until(evidence: Evidence, plan: Plan) -> datetime | None:
    """Fold the payments that still stand, in `paid_at` order, into the end of the paid period.

    A payment extends the period from max(paid_at, current end). Consecutive periods are counted
    from one anchor so that month ends do not drift (31 Jan + 2 months is 31 Mar, not 28 Mar).
    """
    voided = _voided_charges(evidence)
    months = PLAN_MONTHS[plan]
    end: datetime | None = None
    anchor: datetime | None = None
    periods = 0

    for payment in sorted(evidence.payments, key=lambda p: (p.paid_at, p.charge_id)):
        if payment.charge_id in voided:
            continue
        if end is None or anchor is None or payment.paid_at > end:
            anchor, periods = payment.paid_at, 1
        else:
            periods += 1
        end = anchor + relativedelta(months=months * periods)
    return end


def _basis(evidence: Evidence) -> LifecycleMark:
    """Return the mark that sets plan and user: the cancellation if any, else the latest event."""
    return evidence.mark("cancelled") or max(evidence.marks)


def _last_event_at(evidence: Evidence) -> datetime:
    times = [mark.occurred_at for mark in evidence.marks]
    times += [payment.paid_at for payment in evidence.payments]
    times += [reversal.occurred_at for reversal in evidence.reversals]
    if evidence.last_failure_at is not None:
        times.append(evidence.last_failure_at)
    return max(times)


def _evaluate(evidence: Evidence, now: datetime, grace: timedelta) -> tuple[SubscriptionStatus, Entitlement]:
    """Return the status and entitlement that the evidence implies at `now`."""
    basis = _basis(evidence)
    end = paid_until(evidence, basis.plan)
    cancelled = evidence.mark("cancelled")

    if cancelled is not None:
        if end is None:
            # Nothing was paid, so nothing is left to keep: any later fact or check expires it.
            if now > cancelled.occurred_at:
                return "expired", Entitlement(False, cancelled.occurred_at, "expired")
            return "cancelled", Entitlement(False, cancelled.occurred_at, "cancelled")
        if now >= end:
            return "expired", Entitlement(False, end, "expired")
        return "cancelled", Entitlement(True, end, "cancelled_until_period_end")

    suspended = evidence.mark("suspended")
    reactivated = evidence.mark("reactivated")
    if suspended is not None and (reactivated is None or suspended > reactivated):
        return "suspended", Entitlement(False, suspended.occurred_at, "suspended")

    if end is None:
        return "pending_payment", Entitlement(False, basis.occurred_at, "pending_payment")
    if now < end:
        return "active", Entitlement(True, end, "paid")
    if now < end + grace:
        return "past_due", Entitlement(True, end + grace, "grace_period")
    return "expired", Entitlement(False, end + grace, "expired")


def _as_of(evidence: Evidence) -> datetime:
    """Return the time the evidence reaches: its latest event or period-end check."""
    last = _last_event_at(evidence)
    return max(last, evidence.checked_at) if evidence.checked_at is not None else last


def _derive(ref: str, evidence: Evidence, version: int, grace: timedelta) -> SubscriptionState:
    basis = _basis(evidence)
    as_of = _as_of(evidence)
    status, (access, until, _) = _evaluate(evidence, as_of, grace)
    return SubscriptionState(
        subscription_ref=ref,
        status=status,
        plan=basis.plan,
        user_id=basis.user_id,
        current_period_end=paid_until(evidence, basis.plan),
        version=version,
        last_event_at=_last_event_at(evidence),
        access=access,
        until=until,
        evidence=evidence,
    )


def entitlement(
    state: SubscriptionState, now: datetime, *, grace_period: timedelta = DEFAULT_GRACE_PERIOD
) -> Entitlement:
    """Return whether the subscriber is entitled at `now`, until when, and why.

    The stored status only moves when a fact arrives. This evaluates the rules at `now`, so a period
    that ended since the last check already counts. A `now` earlier than the state's own time is
    treated as that time.
    """
    moment = max(_utc(now, "now"), _as_of(state.evidence))
    return _evaluate(state.evidence, moment, grace_period)[1]


# ---------------------------------------------------------------------------------------------
# Merging one fact into the evidence.


def _merge_mark(evidence: Evidence, fact: LifecycleFact) -> Evidence:
    new = LifecycleMark(
        fact.occurred_at, fact.event_id, fact.KIND, fact.user_id, fact.plan, fact.current_period_end
    )
    current = evidence.mark(fact.KIND)
    if fact.KIND == "cancelled":
        kept = new if current is None or new < current else current
        # A cancellation is final: what happened before it no longer decides anything.
        return replace(evidence, marks=(kept,))
    if evidence.mark("cancelled") is not None:
        return evidence
    if current is not None and current >= new:
        return evidence
    others = tuple(mark for mark in evidence.marks if mark.kind != fact.KIND)
    return replace(evidence, marks=tuple(sorted((*others, new), key=lambda mark: mark.kind)))


def _merge_payment(evidence: Evidence, fact: PaymentFact | PeriodEndChecked) -> Evidence:
    if isinstance(fact, ChargePaid):
        payment = Payment(fact.charge_id, fact.occurred_at, fact.amount)
        # The NIX event and the PIX callback may confirm one charge twice; the earlier time wins.
        payments = {p.charge_id: p for p in evidence.payments}
        known = payments.get(fact.charge_id)
        if known is not None and known.paid_at <= payment.paid_at:
            return evidence
        payments[fact.charge_id] = payment
        return replace(evidence, payments=tuple(sorted(payments.values(), key=lambda p: p.charge_id)))

    if isinstance(fact, ChargeRefunded | ChargeChargedBack):
        kind: Literal["refund", "chargeback"] = "refund" if isinstance(fact, ChargeRefunded) else "chargeback"
        if isinstance(fact, ChargeRefunded) and fact.status != "DEVOLVIDO":
            return evidence
        reversal = Reversal(fact.refund_id, fact.charge_id, kind, fact.amount, fact.occurred_at)
        reversals = {r.refund_id: r for r in evidence.reversals}
        known_reversal = reversals.get(fact.refund_id)
        if known_reversal is not None and known_reversal.occurred_at <= reversal.occurred_at:
            return evidence
        reversals[fact.refund_id] = reversal
        return replace(evidence, reversals=tuple(sorted(reversals.values(), key=lambda r: r.refund_id)))

    if isinstance(fact, ChargeFailed):
        if evidence.last_failure_at is not None and evidence.last_failure_at >= fact.occurred_at:
            return evidence
        return replace(evidence, last_failure_at=fact.occurred_at)

    if evidence.checked_at is not None and evidence.checked_at >= fact.occurred_at:
        return evidence
    return replace(evidence, checked_at=fact.occurred_at)


def _illegal(state: SubscriptionState | None, fact: Fact, reason: str) -> Decision:
    name = FACT_NAMES[type(fact)]
    illegal = IllegalTransition(
        fact.subscription_ref, fact.event_id, state.status if state else None, name, reason, fact.occurred_at
    )
    previous = state.status if state else None
    return Decision(state, False, name, reason, previous_status=previous, illegal=illegal)


def _check_lifecycle(state: SubscriptionState, fact: LifecycleFact) -> str | None:
    """Return why `fact` cannot apply to `state`, or None when it can."""
    if fact.user_id != state.user_id:
        return f"user id {fact.user_id!r} differs from the subscription's user id {state.user_id!r}"

    cancelled = state.evidence.mark("cancelled")
    if cancelled is not None and fact.KIND != "cancelled" and fact.occurred_at > cancelled.occurred_at:
        return (
            f"subscription was cancelled at {cancelled.occurred_at.isoformat()}; "
            f"a later {fact.KIND!r} event needs a new subscription"
        )
    return None


def apply(
    state: SubscriptionState | None, fact: Fact, *, grace_period: timedelta = DEFAULT_GRACE_PERIOD
) -> Decision:
    """Apply one fact to a subscription's state and decide what to store.

    - A lifecycle event for an unknown subscription creates it.
    - A payment fact or period-end check for an unknown subscription returns a hold: the caller
      keeps the fact and applies it once the subscription exists.
    - A fact that the rules reject returns the state unchanged with an `IllegalTransition`.
    - A repeated or superseded fact returns `changed=False`.
    """
    name = FACT_NAMES[type(fact)]
    previous = state.status if state else None

    if state is not None and fact.subscription_ref != state.subscription_ref:
        return _illegal(state, fact, f"fact for subscription {fact.subscription_ref!r} applied to {state.subscription_ref!r}")

    if state is None:
        if not isinstance(fact, _LifecycleFact):
            return Decision(None, False, name, "subscription not seen yet; hold the fact until it appears", hold=True)
        new_evidence = _merge_mark(Evidence(), fact)
        created = _derive(fact.subscription_ref, new_evidence, 1, grace_period)
        return Decision(created, True, name, f"first event of the subscription: {created.status}")

    if isinstance(fact, _LifecycleFact):
        problem = _check_lifecycle(state, fact)
        if problem is not None:
            return _illegal(state, fact, problem)
        new_evidence = _merge_mark(state.evidence, fact)
    else:
        new_evidence = _merge_payment(state.evidence, fact)

    if new_evidence == state.evidence:
        return Decision(state, False, name, "duplicate or superseded fact: nothing changes", previous_status=previous)

    derived = _derive(state.subscription_ref, new_evidence, state.version + 1, grace_period)
    if derived.status != state.status:
        reason = f"{state.status} -> {derived.status}"
    else:
        reason = f"recorded; status stays {derived.status}"
    return Decision(derived, True, name, reason, previous_status=previous)


def replay(
    facts: Iterable[Fact], *, grace_period: timedelta = DEFAULT_GRACE_PERIOD
) -> tuple[SubscriptionState | None, list[Decision]]:
    """Apply facts in the given order as a consumer would, re-applying held facts once the
    subscription exists; return the final state and every decision."""
    state: SubscriptionState | None = None
    held: list[Fact] = []
    decisions: list[Decision] = []

    for fact in facts:
        decision = apply(state, fact, grace_period=grace_period)
        decisions.append(decision)
        if decision.hold:
            held.append(fact)
            continue
        state = decision.state

        while state is not None and held:
            held_fact = held.pop(0)
            decision = apply(state, held_fact, grace_period=grace_period)
            decisions.append(decision)
            state = decision.state
    return state, decisions


# ---------------------------------------------------------------------------------------------
# JSON forms for the `subscriptions.evidence` column and the review tables.

_STATE_ADAPTER: TypeAdapter[SubscriptionState] = TypeAdapter(SubscriptionState)
_FACT_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {kind: TypeAdapter(kind) for kind in FACT_NAMES}


def state_to_json(state: SubscriptionState) -> dict[str, Any]:
    result: dict[str, Any] = _STATE_ADAPTER.dump_python(state, mode="json")
    return result


def state_from_json(value: dict[str, Any]) -> SubscriptionState:
    return _STATE_ADAPTER.validate_python(value)


def fact_to_json(fact: Fact) -> dict[str, Any]:
    """Return the fact as JSON with its name under `fact`, for `held_payments` and reviews."""
    body: dict[str, Any] = _FACT_ADAPTERS[type(fact)].dump_python(fact, mode="json")
    return {"fact": FACT_NAMES[type(fact)], **body}


def fact_from_json(value: dict[str, Any]) -> Fact:
    names = {name: kind for kind, name in FACT_NAMES.items()}
    body = dict(value)
    kind = names[body.pop("fact")]
    result: Fact = _FACT_ADAPTERS[kind].validate_python(body)
    return result
