"""Building blocks of simulated partner traffic: deliveries, fake subscribers, signing and mixing.

Each partner has its own generator (see `traffic_nix.py`) that turns one business flow, such as a
PIX charge that gets paid, into the list of webhook deliveries the partner would send. `TrafficMix`
interleaves the flows of all partners and adds the redeliveries and reordering that real
partners produce.
"""

import json
import random
import string
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from faker import Faker
from standardwebhooks import Webhook

PLAN_PRICES = {"mensal": Decimal("29.90"), "anual": Decimal("299.00")}


@dataclass(frozen=True)
class Delivery:
    """One webhook call as a partner sends it; `body` is signed byte for byte."""

    partner: str
    path: str
    webhook_id: str
    event_type: str
    body: bytes
    redelivery: bool = False


def delivery(partner: str, path: str, event_type: str, payload: dict[str, Any]) -> Delivery:
    """Return a first delivery of `payload` with a new `webhook-id`."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Delivery(partner, path, f"msg_{uuid.uuid4().hex}", event_type, body)


def signed_headers(secret: str, item: Delivery, now: datetime) -> dict[str, str]:
    """Return the Standard Webhooks headers that sign `item` with `secret` at `now`."""
    signature = Webhook(secret).sign(item.webhook_id, now, item.body)
    return {
        "content-type": "application/json",
        "webhook-id": item.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def random_code(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choices(alphabet, k=length))


@dataclass(frozen=True)
class Subscriber:
    """A fake REDETV!PLUS subscriber; every personal field is generated."""

    user_id: str
    subscription_ref: str
    plan: str
    name: str
    email: str
    cpf: str
    phone: str

    @property
    def price(self) -> Decimal:
        return PLAN_PRICES[self.plan]

    def customer(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "cpf": self.cpf, "phone": self.phone}


def _digits(text: str) -> str:
    return "".join(character for character in text if character.isdigit())


@dataclass
class SubscriberPool:
    """Fake subscribers shared by every partner's generator, so that their events refer to the same people."""

    rng: random.Random
    max_size: int = 500
    faker: Faker = field(init=False)
    subscribers: list[Subscriber] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faker = Faker("pt_BR")
        self.faker.seed_instance(self.rng.getrandbits(64))

    def new(self) -> Subscriber:
        """Create a subscriber with a valid-looking CPF (correct check digits), e-mail and mobile phone."""
        name = self.faker.name()
        # Faker writes mobile numbers with or without the country code; area codes never start with 0.
        national = _digits(self.faker.cellphone_number().removeprefix("+55")).lstrip("0")
        subscriber = Subscriber(
            user_id=f"usr_{random_code(self.rng, 12)}",
            subscription_ref=f"sub_{random_code(self.rng, 14)}",
            plan="anual" if self.rng.random() < 0.2 else "mensal",
            name=name,
            # example.com/.org/.net domains, reserved so that no mail can reach a real inbox.
            email=self.faker.safe_email(),
            cpf=_digits(self.faker.cpf()),
            phone="+55" + national,
        )
        if len(self.subscribers) < self.max_size:
            self.subscribers.append(subscriber)
        else:
            self.subscribers[self.rng.randrange(self.max_size)] = subscriber
        return subscriber

    def pick(self, new_share: float = 0.6) -> Subscriber:
        """Return a new subscriber, or with probability 1 - `new_share` one that already paid before."""
        if not self.subscribers or self.rng.random() < new_share:
            return self.new()
        return self.rng.choice(self.subscribers)


class PartnerTraffic(Protocol):
    """One partner's generator: each call returns the deliveries of one business flow, in sending order."""

    partner: str

    def next_flow(self) -> list[Delivery]: ...


@dataclass
class TrafficMix:
    """Endless stream of deliveries interleaved from several flows of several partners.

    Up to `concurrent_flows` flows are open at once, and each step sends the next delivery of one of
    them at random, so the steps of one flow are spread out in time. With probability
    `redelivery_rate` a delivery is sent again later with the same `webhook-id` and body, and with
    probability `reorder_rate` a flow sends two neighbouring deliveries in swapped order.
    """

    partners: Sequence[tuple[PartnerTraffic, float]]
    rng: random.Random
    concurrent_flows: int = 6
    redelivery_rate: float = 0.05
    reorder_rate: float = 0.1
    _open: list[deque[Delivery]] = field(init=False, default_factory=list)

    def __iter__(self) -> Iterator[Delivery]:
        return self

    def __next__(self) -> Delivery:
        while len(self._open) < self.concurrent_flows:
            self._open.append(deque(self._new_flow()))

        index = self.rng.randrange(len(self._open))
        flow = self._open[index]
        item = flow.popleft()

        if not item.redelivery and self.rng.random() < self.redelivery_rate:
            position = self.rng.randint(0, len(flow))
            flow.insert(position, replace(item, redelivery=True))
        if not flow:
            del self._open[index]
        return item

    def _new_flow(self) -> list[Delivery]:
        generators = [generator for generator, _ in self.partners]
        weights = [weight for _, weight in self.partners]
        flow = self.rng.choices(generators, weights)[0].next_flow()
        if len(flow) >= 2 and self.rng.random() < self.reorder_rate:
            swap = self.rng.randrange(len(flow) - 1)
            flow[swap], flow[swap + 1] = flow[swap + 1], flow[swap]
        return flow
