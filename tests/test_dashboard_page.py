"""The dashboard page in real headless Chromium, against a gateway on a real port and PostgreSQL."""

from collections.abc import AsyncIterator

import httpx
import pytest

from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN
from tests.dashboard_support import send_webhooks
from tests.live_support import CHROMIUM, CHROMIUM_ARGS, running_gateway

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")

TIMEOUT_MS = 15_000
# The page polls every 5 s, so noticing a stopped gateway can take one poll plus the request.
UNREACHABLE_TIMEOUT_MS = 25_000


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def log_in(page: object, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/painel")  # type: ignore[attr-defined]
    await page.fill("#token", token)  # type: ignore[attr-defined]
    await page.click("#login-form button[type=submit]")  # type: ignore[attr-defined]


async def test_page_shows_figures(browser: object, settings: Settings) -> None:
    from playwright.async_api import expect

    async with running_gateway(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            await send_webhooks(client, nix=3, redetv=2)
        page = await browser.new_page()  # type: ignore[attr-defined]

        await log_in(page, base_url, OPERATOR_TOKEN)

        nix_row = page.locator("#webhooks-rows tr", has_text="NIX").locator("td")
        await expect(nix_row).to_have_text(["NIX", "3", "3"], timeout=TIMEOUT_MS)
        await expect(page.locator("#outbox-unpublished")).to_have_text("5")
        await expect(page.locator("[data-tile=draws] .status")).to_have_text("Atenção")
        await expect(page.locator("[data-tile=outbox] .status")).to_have_text("OK")
        await expect(page.locator("#next-draw-empty")).to_have_text("Nenhum sorteio agendado.")
        assert OPERATOR_TOKEN not in page.url
        assert await page.evaluate("sessionStorage.getItem('festival.operatorToken')") == OPERATOR_TOKEN


async def test_page_wrong_token(browser: object, settings: Settings) -> None:
    from playwright.async_api import expect

    async with running_gateway(settings) as base_url:
        page = await browser.new_page()  # type: ignore[attr-defined]

        await log_in(page, base_url, "not-an-operator-token")

        await expect(page.locator("#login-error")).to_have_text(
            "Token recusado pelo servidor (401): confira o token de operador e tente de novo.", timeout=TIMEOUT_MS
        )
        await expect(page.locator("#panel")).to_be_hidden()
        assert await page.evaluate("sessionStorage.getItem('festival.operatorToken')") is None


async def test_page_gateway_unreachable(browser: object, settings: Settings) -> None:
    from playwright.async_api import expect

    page = await browser.new_page()  # type: ignore[attr-defined]
    async with running_gateway(settings) as base_url:
        await log_in(page, base_url, OPERATOR_TOKEN)
        await expect(page.locator("#panel")).to_be_visible(timeout=TIMEOUT_MS)

    await expect(page.locator("#error")).to_contain_text(
        "Não foi possível acessar a API do painel", timeout=UNREACHABLE_TIMEOUT_MS
    )
    await expect(page.locator("#panel")).to_be_visible()
