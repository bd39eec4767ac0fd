"""The live draw page in real headless Chromium, fed by messages published on a real Mosquitto."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from festival.services import Mosquitto
from festival.settings import Settings
from tests.live_support import CHROMIUM, CHROMIUM_ARGS, DrawScript, publisher, running_gateway

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")

WINNERS = [("Maria S.", "***.456.789-**", 4242), ("João P.", "***.111.222-**", 17)]
TIMEOUT_MS = 15_000


@pytest.fixture
def live_settings(settings: Settings, mosquitto: Mosquitto) -> Settings:
    # The broker's ACL lets the screen user read only under festival/v1, so these tests use that
    # root and clear what they retain.
    c = mosquitto.credentials
    ws_url = f"ws://{c.screen_user}:{c.screen_password}@127.0.0.1:{mosquitto.ws_port}"
    return settings.model_copy(update={"topic_root": "festival/v1", "mqtt_ws_url": SecretStr(ws_url)})


@pytest.fixture
async def base_url(live_settings: Settings) -> AsyncIterator[str]:
    async with running_gateway(live_settings) as url:
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def draw(live_settings: Settings) -> AsyncIterator[DrawScript]:
    script = DrawScript(WINNERS)
    yield script
    async with publisher(live_settings) as pub:
        await pub.clear(script.draw_id)


async def expect_result(page: object, script: DrawScript) -> None:
    from playwright.async_api import expect

    numbers = [w.number_display for w in script.winners]
    await expect(page.locator("#numbers li")).to_have_text(numbers, timeout=TIMEOUT_MS)  # type: ignore[attr-defined]
    await expect(page.locator("#winners li")).to_have_count(len(WINNERS), timeout=TIMEOUT_MS)  # type: ignore[attr-defined]
    for index, (name, cpf, _) in enumerate(WINNERS):
        winner = page.locator("#winners li").nth(index)  # type: ignore[attr-defined]
        await expect(winner).to_contain_text(name)
        await expect(winner).to_contain_text(cpf)
    await expect(page.locator("#seed")).to_have_text("cd" * 32, timeout=TIMEOUT_MS)  # type: ignore[attr-defined]
    await expect(page.locator("#badge")).to_have_text("Resultado final")  # type: ignore[attr-defined]


async def test_live_draw_while_open(browser: object, base_url: str, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("scheduled", 0))
        await pub.current(draw.current("scheduled"))
        await page.goto(f"{base_url}/ao-vivo")
        await expect(page.locator("#title")).to_have_text("Sorteio de teste da semana", timeout=TIMEOUT_MS)
        await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
        await expect(page.locator("#commitment")).to_have_text("ab" * 32)

        await pub.current(draw.current("drawing"))
        for index, step in enumerate(steps[:-1]):
            await pub.step(step)
            if step.kind == "number_drawn":
                await expect(page.locator("#numbers li").last).to_have_text(step.number_display or "", timeout=TIMEOUT_MS)
            if index == 0:
                await expect(page.locator("#badge")).to_have_text("Ao vivo", timeout=TIMEOUT_MS)

        await pub.step(steps[-1])
        await pub.state(draw.state("completed", len(steps)))
        await pub.current(draw.current("completed"))

    await expect_result(page, draw)
    assert await page.evaluate("window.liveScreen.transport") == "mqtt"


async def test_live_page_after_draw(browser: object, base_url: str, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("completed", len(steps)))

    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{base_url}/ao-vivo/{draw.draw_id}?tv=1")

    await expect_result(page, draw)
    await expect(page.locator("#verify")).to_have_attribute("href", f"/v1/draws/{draw.draw_id}/audit")
    assert await page.evaluate("document.body.classList.contains('tv')")


async def test_live_older_state_ignored(browser: object, base_url: str, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{base_url}/ao-vivo/{draw.draw_id}")
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("completed", len(steps)))
        await expect(page.locator("#badge")).to_have_text("Resultado final", timeout=TIMEOUT_MS)

        # A stale retained state (lower sequence, still drawing) arrives after the result.
        await pub.state(draw.state("drawing", 2))
        await pub.step(draw.step("finished"))

    await expect(page.locator("#seed")).to_have_text("cd" * 32)
    await expect(page.locator("#badge")).to_have_attribute("data-live", "false")
    await expect(page.locator("#winners li")).to_have_count(len(WINNERS))


async def test_live_broker_restart(
    browser: object, base_url: str, live_settings: Settings, draw: DrawScript, mosquitto: Mosquitto
) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{base_url}/ao-vivo/{draw.draw_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("drawing", 1))
        await pub.step(steps[1])
        await expect(page.locator("#numbers li")).to_have_count(1, timeout=TIMEOUT_MS)

    await asyncio.to_thread(mosquitto.stop)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT_MS)
    await expect(page.locator("#connection")).to_contain_text("Reconectando")
    await asyncio.to_thread(mosquitto.start)

    # The rest of the draw happens while the page may still be waiting to reconnect; only the
    # retained state carries it then.
    async with publisher(live_settings) as pub:
        for step in steps[2:]:
            await pub.step(step)
        await pub.state(draw.state("completed", len(steps)))

    await expect_result(page, draw)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)


async def test_live_leaves_state_then_restart(
    browser: object, base_url: str, live_settings: Settings, draw: DrawScript, mosquitto: Mosquitto
) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{base_url}/ao-vivo/{draw.draw_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("closed", 0))
        await expect(page.locator("#title")).to_have_text("Sorteio de teste da semana", timeout=TIMEOUT_MS)

        # The started step closes the page's only gap, so it leaves the state topic.
        await pub.step(steps[0])
        await pub.state(draw.state("drawing", 1))
        await page.wait_for_function("window.liveScreen.stateUnsubscribes === 1", timeout=TIMEOUT_MS)
        states_before = await page.evaluate("window.liveScreen.received.state")

        # A subscribed page would receive each state before the step published after it.
        await pub.step(steps[1])
        await pub.state(draw.state("drawing", 2))
        await pub.step(steps[2])
        await expect(page.locator("#winners li")).to_have_count(1, timeout=TIMEOUT_MS)

    assert await page.evaluate("window.liveScreen.received.state") == states_before
    assert await page.evaluate("window.liveScreen.stateDrawId") is None

    await asyncio.to_thread(mosquitto.stop)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT_MS)
    await asyncio.to_thread(mosquitto.start)
    async with publisher(live_settings) as pub:
        for step in steps[3:]:
            await pub.step(step)
        await pub.state(draw.state("completed", len(steps)))

    await expect_result(page, draw)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
    assert await page.evaluate("window.liveScreen.received.state") > states_before


async def test_live_gap_refetches_state(browser: object, base_url: str, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{base_url}/ao-vivo/{draw.draw_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("drawing", 1))
        await pub.step(steps[1])
        await page.wait_for_function("window.liveScreen.stateUnsubscribes === 1", timeout=TIMEOUT_MS)

        # Step 3 (the first winner) never reaches the page. Step 4 shows the gap, and the retained
        # state fills it.
        await pub.state(draw.state("drawing", 3))
        await pub.step(steps[3])
        await expect(page.locator("#winners li")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(page.locator("#numbers li")).to_have_count(2)

        # Step 5 leaves no gap, so the page leaves the state topic again.
        await pub.step(steps[4])
        await page.wait_for_function("window.liveScreen.stateUnsubscribes === 2", timeout=TIMEOUT_MS)

    await expect(page.locator("#winners li")).to_have_count(2)


async def test_live_switch_resubscribes_state(
    browser: object, base_url: str, live_settings: Settings, draw: DrawScript
) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    following = DrawScript(WINNERS)
    page = await browser.new_page()  # type: ignore[attr-defined]
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("drawing", 1))
        await pub.current(draw.current("drawing"))
        await page.goto(f"{base_url}/ao-vivo")
        # The title comes with the retained state, so the page's subscription to the steps is active too.
        await expect(page.locator("#title")).to_have_text("Sorteio de teste da semana", timeout=TIMEOUT_MS)
        await pub.step(steps[1])
        await page.wait_for_function("window.liveScreen.stateUnsubscribes === 1", timeout=TIMEOUT_MS)

        # The next draw is announced: the page follows it and takes its retained state.
        await pub.state(following.state("scheduled", 0).model_copy(update={"title": "Próximo sorteio de teste"}))
        await pub.current(following.current("scheduled"))
        await expect(page.locator("#title")).to_have_text("Próximo sorteio de teste", timeout=TIMEOUT_MS)
        await expect(page.locator("#badge")).to_have_text("Próximo sorteio")
        await expect(page.locator("#numbers li")).to_have_count(0)
        assert await page.evaluate("window.liveScreen.stateDrawId") == str(following.draw_id)
        await pub.clear(following.draw_id)


async def test_live_stale_state_late_joiner(
    browser: object, base_url: str, live_settings: Settings, draw: DrawScript
) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    async with publisher(live_settings) as pub:
        # The retained state lags behind `draws/current`, which already reports the draw completed.
        await pub.state(draw.state("drawing", 2))
        await pub.current(draw.current("completed"))
        await page.goto(f"{base_url}/ao-vivo")
        await expect(page.locator("#numbers li")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(page.locator("#badge")).to_have_text("Resultado final")
        await expect(page.locator("#badge")).to_have_attribute("data-live", "false")

        # The page keeps the state topic until the completed state arrives.
        await pub.state(draw.state("completed", len(steps)))

    await expect_result(page, draw)


async def test_live_sse_fallback(browser: object, base_url: str, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    steps = draw.all_steps()
    page = await browser.new_page()  # type: ignore[attr-defined]
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("drawing", 1))
        await pub.current(draw.current("drawing"))
        await page.goto(f"{base_url}/ao-vivo?transporte=sse")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)
        await expect(page.locator("#title")).to_have_text("Sorteio de teste da semana", timeout=TIMEOUT_MS)

        for step in steps[1:]:
            await pub.step(step)
        await pub.state(draw.state("completed", len(steps)))

    await expect_result(page, draw)
    assert await page.evaluate("window.liveScreen.transport") == "sse"


async def test_live_sse_when_ws_unreachable(browser: object, live_settings: Settings, draw: DrawScript) -> None:
    from playwright.async_api import expect

    from festival.services import free_port

    closed_port = free_port()
    unreachable = live_settings.model_copy(update={"mqtt_ws_url": SecretStr(f"ws://screen:x@127.0.0.1:{closed_port}")})
    steps = draw.all_steps()
    async with publisher(live_settings) as pub:
        await pub.state(draw.state("completed", len(steps)))

    async with running_gateway(unreachable) as url:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{url}/ao-vivo/{draw.draw_id}")
        await expect_result(page, draw)
        assert await page.evaluate("window.liveScreen.transport") == "sse"
        await page.close()
