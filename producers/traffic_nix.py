"""Simulated NIX webhooks: the deliveries of PIX, card and boleto charges, refunds and chargebacks.

Field names follow the NIX contract: `POST /webhooks/nix` carries one event (`charge.created`,
`charge.paid`, `charge.failed`, `charge.refunded`, `charge.chargeback`), and `POST /webhooks/nix/pix`
carries the Banco Central's API Pix callback `{"pix": [...]}` that NIX forwards unchanged.
"""

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from producers.traffic import Delivery, Subscriber, SubscriberPool, delivery, random_code

# Brazil has had no daylight saving time since 2019, so São Paulo time is a fixed offset.
BRASILIA = timezone(timedelta(hours=-3))

NIX_PATH = "/webhooks/nix"
PIX_PATH = "/webhooks/nix/pix"

CARD_FAILURES = ("insufficient_funds", "card_declined", "expired_card", "antifraud_rejected")
CHARGEBACK_REASONS = ("fraud", "product_not_received", "duplicate_processing")

# ISPB codes of some PIX participants, used as the payer's bank in `endToEndId`.
PAYER_ISPBS = ("00000000", "00360305", "60701190", "60746948", "18236120", "90400888")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(BRASILIA).isoformat(timespec="seconds")


def _bacen_time(moment: datetime) -> str:
    """Return a time as the API Pix writes `horario`: UTC with milliseconds and a `Z`."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Charge:
    charge_id: str
    subscriber: Subscriber
    method: str
    amount: Decimal
    created_at: datetime


class NixTraffic:
    """Generator of NIX flows; flows pick their people from the shared `SubscriberPool`."""

    partner = "nix"

    # Share of flows of each payment method.
    METHODS = (("pix", 0.55), ("card", 0.35), ("boleto", 0.10))

    def __init__(
        self,
        rng: random.Random,
        pool: SubscriberPool,
        *,
        refund_rate: float = 0.04,
        chargeback_rate: float = 0.02,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rng = rng
        self.pool = pool
        self.refund_rate = refund_rate
        self.chargeback_rate = chargeback_rate
        self._now = clock or (lambda: datetime.now(timezone.utc))

    def next_flow(self) -> list[Delivery]:
        methods = [method for method, _ in self.METHODS]
        weights = [weight for _, weight in self.METHODS]
        method = self.rng.choices(methods, weights)[0]
        if method == "pix":
            return self.pix_flow()
        if method == "card":
            return self.card_flow()
        return self.boleto_flow()

    def pix_flow(self) -> list[Delivery]:
        """Return `charge.created` with the `txid` and the Banco Central callback, sometimes callback first."""
        # The deliveries go out now, so the charge was created minutes ago and paid since then:
        # a partner never reports a payment in the future.
        waited = self.rng.randint(20, 600)
        charge = self._charge("pix", created_at=self._now() - timedelta(seconds=waited))
        txid = random_code(self.rng, self.rng.randint(26, 35))
        paid_at = charge.created_at + timedelta(seconds=self.rng.randint(5, waited))
        pix = self._pix(charge, txid, paid_at)

        flow = [self._event("charge.created", charge, pix={"txid": txid})]
        callback = self._pix_callback([pix])
        # The Banco Central's callback can overtake NIX's own `charge.created`.
        flow.insert(0 if self.rng.random() < 0.2 else 1, callback)

        if self.rng.random() < 0.3:
            paid_pix = {"txid": txid, "endToEndId": pix["endToEndId"], "horario": pix["horario"]}
            flow.append(self._event("charge.paid", charge, paid_at=_rfc3339(paid_at), pix=paid_pix))
        return flow + self._after_payment(charge, card=False)

    def card_flow(self) -> list[Delivery]:
        """Return a card charge that is paid a few seconds after creation, or fails."""
        charge = self._charge("card", created_at=self._now() - timedelta(seconds=10))
        flow = [self._event("charge.created", charge)]
        if self.rng.random() < 0.15:
            reason = self.rng.choice(CARD_FAILURES)
            return flow + [self._event("charge.failed", charge, failure_reason=reason)]

        paid_at = charge.created_at + timedelta(seconds=self.rng.randint(1, 8))
        flow.append(self._event("charge.paid", charge, paid_at=_rfc3339(paid_at)))
        return flow + self._after_payment(charge, card=True)

    def boleto_flow(self) -> list[Delivery]:
        """Return a boleto issued one to three days ago and paid now."""
        days = self.rng.randint(1, 3)
        charge = self._charge("boleto", created_at=self._now() - timedelta(days=days, minutes=self.rng.randint(0, 600)))
        flow = [
            self._event("charge.created", charge),
            self._event("charge.paid", charge, paid_at=_rfc3339(self._now())),
        ]
        return flow + self._after_payment(charge, card=False)

    def _after_payment(self, charge: Charge, *, card: bool) -> list[Delivery]:
        """Return an occasional refund (processing, then returned) or, for cards, a chargeback."""
        roll = self.rng.random()
        if roll < self.refund_rate:
            partial = self.rng.random() < 0.3
            amount = (charge.amount / 2).quantize(Decimal("0.01")) if partial else charge.amount
            refund_id = f"rf_{random_code(self.rng, 16)}"
            final = "NAO_REALIZADO" if self.rng.random() < 0.1 else "DEVOLVIDO"
            return [
                self._event("charge.refunded", charge, refund=self._refund(refund_id, amount, "EM_PROCESSAMENTO")),
                self._event("charge.refunded", charge, refund=self._refund(refund_id, amount, final)),
            ]
        if card and roll < self.refund_rate + self.chargeback_rate:
            chargeback = {"id": f"cb_{random_code(self.rng, 16)}", "reason": self.rng.choice(CHARGEBACK_REASONS)}
            return [self._event("charge.chargeback", charge, chargeback=chargeback)]
        return []

    def _charge(self, method: str, created_at: datetime | None = None) -> Charge:
        subscriber = self.pool.pick()
        return Charge(
            charge_id=f"ch_{random_code(self.rng, 18)}",
            subscriber=subscriber,
            method=method,
            amount=subscriber.price,
            created_at=created_at or self._now(),
        )

    def _event(self, event_type: str, charge: Charge, **extra: Any) -> Delivery:
        data: dict[str, Any] = {
            "charge_id": charge.charge_id,
            "subscription_ref": charge.subscriber.subscription_ref,
            "amount": str(charge.amount),
            "method": charge.method,
            "customer": charge.subscriber.customer(),
        }
        data.update(extra)
        created_at = charge.created_at if event_type == "charge.created" else self._now()
        payload = {
            "id": f"evt_{random_code(self.rng, 20)}",
            "type": event_type,
            "created_at": _rfc3339(created_at),
            "data": data,
        }
        return delivery(self.partner, NIX_PATH, event_type, payload)

    def _pix(self, charge: Charge, txid: str, paid_at: datetime) -> dict[str, Any]:
        """Return one PIX as the API Pix (v2.9.0) lists it in a callback."""
        ispb = self.rng.choice(PAYER_ISPBS)
        stamp = paid_at.astimezone(timezone.utc).strftime("%Y%m%d%H%M")
        end_to_end_id = f"E{ispb}{stamp}{random_code(self.rng, 11, string.ascii_uppercase + string.digits)}"
        return {
            "endToEndId": end_to_end_id,
            "txid": txid,
            "valor": str(charge.amount),
            "horario": _bacen_time(paid_at),
            "infoPagador": "Assinatura Festival de Prêmios",
        }

    def _pix_callback(self, pix: list[dict[str, Any]]) -> Delivery:
        return delivery(self.partner, PIX_PATH, "pix", {"pix": pix})

    @staticmethod
    def _refund(refund_id: str, amount: Decimal, status: str) -> dict[str, str]:
        return {"id": refund_id, "amount": str(amount), "status": status}
