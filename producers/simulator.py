"""`festival simulate`: signed, realistic partner webhooks sent to a gateway at a steady rate.

The traffic comes from one generator per partner (`producers/traffic_nix.py` for NIX,
`producers/traffic_redetv.py` for REDETV!PLUS), mixed by
`producers.traffic.TrafficMix`. Logs carry counts, webhook ids and event types only, never a
request body, because bodies contain the fake customers' personal data.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from datetime import datetime, timezone

import httpx

from festival.launcher_checks import local_http_url
from festival.settings import Settings
from producers.traffic import Delivery, PartnerTraffic, SubscriberPool, TrafficMix, signed_headers
from producers.traffic_nix import NixTraffic
from producers.traffic_redetv import RedetvTraffic

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
SUMMARY_EVERY_SECONDS = 10.0
# Failures of the same kind are logged one by one up to this count, then once every this many.
FAILURE_LOG_EVERY = 50


class Simulator:
    """Sends deliveries from `traffic` with the partners' secrets and counts the gateway's responses."""

    def __init__(self, client: httpx.AsyncClient, secrets: dict[str, str], traffic: TrafficMix) -> None:
        self.client = client
        self.secrets = secrets
        self.traffic = traffic
        self.counts: Counter[str] = Counter()

    async def run(self, rate: float, count: int | None) -> None:
        """Send one delivery every 1/`rate` seconds, measured from the start so that delays do not add up."""
        interval = 1.0 / rate
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)
        started = time.monotonic()
        next_summary = started + SUMMARY_EVERY_SECONDS

        async with asyncio.TaskGroup() as group:
            for index, item in enumerate(self.traffic):
                if count is not None and index >= count:
                    break
                await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))

                # Past MAX_IN_FLIGHT unanswered requests the rate drops instead of memory growing.
                await limit.acquire()
                task = group.create_task(self.send(item), name=f"send-{item.webhook_id}")
                task.add_done_callback(lambda _: limit.release())

                if time.monotonic() >= next_summary:
                    self.log_summary("running")
                    next_summary += SUMMARY_EVERY_SECONDS

    async def send(self, item: Delivery) -> None:
        """Sign and post `item`; count it as accepted, duplicate, rejected or failed."""
        headers = signed_headers(self.secrets[item.partner], item, datetime.now(timezone.utc))
        self.counts["sent"] += 1
        try:
            response = await self.client.post(item.path, content=item.body, headers=headers)
        except httpx.HTTPError as error:
            self._count_failure("unreachable", item, error=type(error).__name__)
            return

        if response.is_success:
            self.counts["duplicate" if item.redelivery else "accepted"] += 1
            logger.debug(
                "webhook sent partner=%s type=%s webhook_id=%s status=%s",
                item.partner, item.event_type, item.webhook_id, response.status_code,
            )
        elif response.is_client_error:
            self._count_failure("rejected", item, status=response.status_code, code=_problem_code(response))
        else:
            self._count_failure("failed", item, status=response.status_code, code=_problem_code(response))

    def _count_failure(self, outcome: str, item: Delivery, **fields: object) -> None:
        self.counts[outcome] += 1
        seen = self.counts[outcome]
        if seen <= FAILURE_LOG_EVERY or seen % FAILURE_LOG_EVERY == 0:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            logger.warning(
                "webhook %s partner=%s type=%s webhook_id=%s redelivery=%s %s count=%s",
                outcome, item.partner, item.event_type, item.webhook_id, item.redelivery, details, seen,
            )

    def exit_code(self, base_url: str) -> int:
        """Return 1, after logging why, when a delivery did not reach the gateway or none was accepted; else 0."""
        c = self.counts
        if c["unreachable"]:
            logger.error(
                "simulator failed: webhooks did not reach the gateway url=%s unreachable=%s sent=%s; "
                "start the gateway, or pass its address with --url or FESTIVAL_HTTP_HOST and FESTIVAL_HTTP_PORT",
                base_url, c["unreachable"], c["sent"],
            )
            return 1

        # Requests still in flight when a stop request cancelled them have no response, so they do not count.
        answered = c["accepted"] + c["duplicate"] + c["rejected"] + c["failed"]
        if answered and not c["accepted"] + c["duplicate"]:
            logger.error(
                "simulator failed: the gateway accepted no webhook url=%s rejected=%s failed=%s; "
                "check that the webhook secrets match the gateway's and read the gateway log",
                base_url, c["rejected"], c["failed"],
            )
            return 1
        return 0

    def log_summary(self, state: str) -> None:
        c = self.counts
        logger.info(
            "simulator %s sent=%s accepted=%s duplicate=%s rejected=%s failed=%s unreachable=%s",
            state, c["sent"], c["accepted"], c["duplicate"], c["rejected"], c["failed"], c["unreachable"],
        )


def _problem_code(response: httpx.Response) -> str:
    """Return the `code` of an RFC 9457 problem body, which carries no personal data, or `-`."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("code", "-"))
    return "-"


def build_traffic(rng: random.Random, partners: set[str]) -> TrafficMix:
    """Return the mix of every partner's generator for which a secret is configured."""
    pool = SubscriberPool(rng)
    generators: list[tuple[PartnerTraffic, float]] = []
    if "nix" in partners:
        generators.append((NixTraffic(rng, pool), 1.0))
    if "redetv" in partners:
        generators.append((RedetvTraffic(rng, pool), 1.0))
    return TrafficMix(generators, rng)


async def run_simulator(
    settings: Settings, url: str | None, rate: float, count: int | None, *, seed: int | None = None
) -> int:
    """Send simulated webhooks to `url` (default: the local gateway) until `count` are sent or cancelled.

    Returns the process exit code: 0, 1 when a webhook did not reach the gateway or none was accepted,
    or 2 for invalid settings. A cancellation (a stop request) ends the run and returns the code too,
    so that an unbounded run stopped with Ctrl-C still reports its failures.
    """
    if not settings.nix_webhook_secrets:
        logger.error("simulator cannot sign webhooks: FESTIVAL_NIX_WEBHOOK_SECRETS is not set")
        return 2
    if rate <= 0:
        logger.error("simulator rate must be positive, got rate=%s", rate)
        return 2

    # httpx logs every request at INFO; the summary and the failure lines are enough here.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    secrets = {"nix": settings.nix_webhook_secrets[0].get_secret_value()}
    if settings.redetv_webhook_secrets:
        secrets["redetv"] = settings.redetv_webhook_secrets[0].get_secret_value()
    else:
        # The gateway holds a payment for a subscription that REDETV!PLUS has not announced.
        logger.warning(
            "simulator sends NIX traffic only: FESTIVAL_REDETV_WEBHOOK_SECRETS is not set, so no "
            "subscription.created is sent and the payments stay held instead of activating subscriptions"
        )
    base_url = url or local_http_url(settings)
    traffic = build_traffic(random.Random(seed), set(secrets))

    logger.info(
        "simulator started url=%s rate=%s count=%s partners=%s",
        base_url, rate, count or "unbounded", ",".join(secrets),
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        simulator = Simulator(client, secrets, traffic)
        try:
            await simulator.run(rate, count or None)
        except asyncio.CancelledError:
            # This coroutine is the whole command, so the stop request ends here and is not re-raised.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logger.info("simulator stop requested")
        finally:
            simulator.log_summary("stopped")
    return simulator.exit_code(base_url)
