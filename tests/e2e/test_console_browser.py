"""The console in headless Chromium (Debian's, driven by Playwright): roles, scopes,
masking, the 360 view, the segment builder and the language switch. The run also keeps
screenshots of the main pages in docs/screenshots/."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import T0, Brand, Shop, phone
from quanyu.domain.access import Role
from quanyu.domain.orders import IdentityInput
from quanyu.entrypoints.api.app import create_app
from quanyu.services import access, insight, members
from quanyu.services.uow import Platform

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "console test password"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# The console's browser tests run on SQLite; the scope rules they exercise are the
# services', which the API tests check on PostgreSQL too.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for this module. Module-scoped: Playwright's sync API keeps an event
    loop running in this thread until it stops, which later tests must not inherit."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium`", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def people(platform: Platform, shop: Shop, brand: Brand) -> dict[str, int]:
    """Three members: Li Na (Shanghai, bound to guide G001), Zhao Lei (Beijing) and
    Sun Mei (Shanghai, no guide), with a year of orders."""
    li = members.register(
        platform,
        members.Registration(
            identities=(IdentityInput("phone", phone(1)),),
            program=brand.program,
            channel="pos",
            store=brand.store,
            guide=brand.guide,
            name="Li Na",
            registered_at=T0 - timedelta(days=300),
        ),
        actor="test",
    )["member_id"]
    zhao = shop.register(
        ("phone", phone(2)), name="Zhao Lei", store=brand.other_store, at=T0 - timedelta(days=200)
    )
    sun = shop.register(("phone", phone(3)), name="Sun Mei", at=T0 - timedelta(days=100))
    now = T0
    for n, (who, days, paid) in enumerate(
        [(1, 280, 39_800), (1, 120, 19_900), (2, 150, 59_900), (3, 60, 19_900), (1, 20, 59_900)]
    ):
        shop.order(f"O-{n}", ("phone", phone(who)), paid=paid, at=T0 - timedelta(days=days))
    shop.at(now)
    for username, role, scope in (
        ("admin", Role.HQ_ADMIN, {}),
        ("ops", Role.HQ_OPERATOR, {}),
        ("analyst", Role.ANALYST, {}),
        ("east", Role.REGION_MANAGER, {"region": "East"}),
        ("sh-manager", Role.STORE_MANAGER, {"stores": [brand.store]}),
        ("wang", Role.GUIDE, {"guide": brand.guide}),
    ):
        access.create_staff(
            platform, username=username, password=PASSWORD, role=role, actor="test", **scope
        )
    insight.define_segment(
        platform,
        code="buyers",
        name="Buyers",
        condition={"orders": "count", "op": "gte", "value": 1},
        actor="test",
    )
    insight.define_segment(
        platform,
        code="repeat",
        name="Repeat buyers",
        condition={"orders": "count", "op": "gte", "value": 2},
        actor="test",
    )
    return {"li": int(li), "zhao": zhao, "sun": sun}


@pytest.fixture
def console(platform: Platform, people: dict[str, int]) -> Iterator[str]:
    """The app served by uvicorn on a free port, in a thread."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def open_page(
    browser: Browser, base: str, username: str, *, locale: str = "en-US", **kw: Any
) -> Page:
    context = browser.new_context(base_url=base, locale=locale, **kw)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_load_state()
    return page


def nav(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("header nav a").all_inner_texts()]


def test_each_role_logs_in_and_sees_only_the_pages_it_may_use(
    browser: Browser, console: str
) -> None:
    expected = {
        "admin": [
            "Dashboard",
            "Members",
            "Segments",
            "Coupons and mall",
            "Stores and guides",
            "Brand set-up",
        ],
        "ops": ["Dashboard", "Members", "Segments", "Coupons and mall", "Stores and guides"],
        "analyst": ["Dashboard", "Members", "Segments", "Coupons and mall", "Stores and guides"],
        "east": ["Dashboard", "Members", "Coupons and mall", "Stores and guides"],
        "sh-manager": ["Dashboard", "Members", "Coupons and mall", "Stores and guides"],
        "wang": ["Members"],
    }
    for username, pages in expected.items():
        page = open_page(browser, console, username)
        expect(page.get_by_test_id("who")).to_be_visible()
        assert nav(page) == pages, username
        if username == "wang":
            assert page.url.endswith("/members")
        page.context.close()
    page = open_page(browser, console, "sh-manager")
    response = page.goto("/setup")
    assert response is not None and response.status == 403
    page.context.close()


def test_a_wrong_password_is_refused_with_a_message(browser: Browser, console: str) -> None:
    context = browser.new_context(base_url=console, locale="en-US")
    page = context.new_page()
    page.goto("/members")
    assert "/login" in page.url  # not logged in: sent to the login page
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit].primary")
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    context.close()


def test_search_by_phone_opens_the_member_360_view(browser: Browser, console: str) -> None:
    page = open_page(browser, console, "ops")
    page.goto("/members")
    page.get_by_test_id("search").fill(phone(1))
    page.get_by_test_id("search").press("Enter")
    results = page.get_by_test_id("results")
    expect(results).to_contain_text("Li Na")
    expect(results).to_contain_text("138****0001")
    results.get_by_role("link", name="Li Na").click()
    expect(page.get_by_test_id("member-name")).to_contain_text("Li Na")
    expect(page.get_by_test_id("guide")).to_have_text("G001")
    expect(page.get_by_test_id("timeline")).to_contain_text("order_placed")
    page.context.close()


def test_a_points_adjustment_shows_in_balance_and_timeline_at_once(
    browser: Browser, console: str, people: dict[str, int]
) -> None:
    page = open_page(browser, console, "ops")
    page.goto(f"/members/{people['li']}")
    before = int(page.get_by_test_id("points-available").inner_text().replace(",", ""))
    form = page.get_by_test_id("adjust")
    form.locator("input[name=points]").fill("250")
    form.locator("input[name=reason]").fill("service recovery")
    form.get_by_role("button").click()
    expect(page.get_by_test_id("points-available")).to_have_text(f"{before + 250:,}")
    expect(page.get_by_test_id("timeline")).to_contain_text("service recovery")
    # Without a reason nothing changes and the form says why.
    form = page.get_by_test_id("adjust")
    form.locator("input[name=points]").fill("5")
    form.locator("input[name=reason]").evaluate("e => e.removeAttribute('required')")
    form.get_by_role("button").click()
    expect(page.get_by_test_id("action-error")).to_contain_text("reason")
    expect(page.get_by_test_id("points-available")).to_have_text(f"{before + 250:,}")
    page.context.close()


def test_the_segment_count_follows_the_condition_as_it_is_edited(
    browser: Browser, console: str
) -> None:
    page = open_page(browser, console, "analyst")
    page.goto("/segments")
    page.get_by_test_id("kind0").select_option("orders")
    page.get_by_test_id("op0").select_option("gte")
    page.get_by_test_id("value0").fill("1")
    expect(page.get_by_test_id("count-value")).to_have_text("3")
    page.get_by_test_id("value0").fill("2")
    expect(page.get_by_test_id("count-value")).to_have_text("1")
    page.get_by_test_id("kind1").select_option("home_store")
    page.get_by_test_id("value1").fill("BJ01")
    expect(page.get_by_test_id("count-value")).to_have_text("0")
    page.context.close()


def test_a_store_manager_cannot_open_another_stores_member_even_by_url(
    browser: Browser, console: str, people: dict[str, int]
) -> None:
    page = open_page(browser, console, "sh-manager")
    ok = page.goto(f"/members/{people['li']}")
    assert ok is not None and ok.status == 200
    refused = page.goto(f"/members/{people['zhao']}")
    assert refused is not None and refused.status == 404
    expect(page.get_by_test_id("error")).to_be_visible()
    page.goto("/members?q=" + phone(2))
    expect(page.get_by_test_id("no-results")).to_be_visible()
    page.context.close()


def test_a_guide_sees_only_their_bound_members(
    browser: Browser, console: str, people: dict[str, int]
) -> None:
    page = open_page(browser, console, "wang")
    page.goto("/members?q=" + phone(1))
    expect(page.get_by_test_id("results")).to_contain_text("Li Na")
    # Sun Mei shops at the same store but is not bound to this guide.
    page.goto("/members?q=" + phone(3))
    expect(page.get_by_test_id("no-results")).to_be_visible()
    refused = page.goto(f"/members/{people['sun']}")
    assert refused is not None and refused.status == 404
    page.context.close()


def test_the_language_follows_the_browser_and_the_switch_persists_for_the_user(
    browser: Browser, console: str
) -> None:
    page = open_page(browser, console, "ops", locale="zh-CN")
    expect(page.locator("header nav")).to_contain_text("会员")
    page.get_by_test_id("lang-en").first.click()
    expect(page.locator("header nav")).to_contain_text("Members")
    page.context.close()
    # A new browser that prefers Chinese: the saved choice (English) wins.
    again = open_page(browser, console, "ops", locale="zh-CN")
    expect(again.locator("header nav")).to_contain_text("Members")
    again.context.close()


def test_the_masked_phone_is_revealed_only_with_permission_and_each_reveal_is_audited(
    browser: Browser, console: str, platform: Platform, people: dict[str, int]
) -> None:
    analyst = open_page(browser, console, "analyst")
    analyst.goto(f"/members/{people['li']}")
    expect(analyst.get_by_test_id("identities")).to_contain_text("138****0001")
    expect(analyst.get_by_test_id("reveal")).to_have_count(0)
    analyst.context.close()
    assert access.audit_entries(platform, action="reveal") == []
    ops = open_page(browser, console, "ops")
    ops.goto(f"/members/{people['li']}")
    ops.get_by_test_id("reveal").click()
    expect(ops.get_by_test_id("identities")).to_contain_text("+8613800130001")
    ops.context.close()
    (entry,) = access.audit_entries(platform, action="reveal")
    assert entry["actor"] == "staff:ops"
    assert entry["subject"] == f"member:{people['li']}"


def test_screenshots_of_the_main_pages(
    browser: Browser, console: str, people: dict[str, int]
) -> None:
    """Kept in docs/screenshots/ and linked from the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    login = browser.new_context(
        base_url=console, locale="zh-CN", viewport={"width": 1280, "height": 800}
    )
    page = login.new_page()
    page.goto("/login")
    page.screenshot(path=SCREENSHOTS / "login.png")
    login.close()
    page = open_page(
        browser, console, "admin", locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    page.goto("/")
    expect(page.locator("[data-chart=lifecycle][data-drawn=true]")).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)
    for path, name in (
        (f"/members?q={phone(1)}", "member-search"),
        (f"/members/{people['li']}", "member-360"),
        ("/segments", "segments"),
        ("/coupons", "coupons-and-mall"),
        ("/stores", "stores-and-guides"),
        ("/setup", "brand-setup"),
    ):
        page.goto(path)
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
    page.context.close()
    phone_page = open_page(
        browser,
        console,
        "wang",
        locale="zh-CN",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    phone_page.goto(f"/members/{people['li']}")
    phone_page.screenshot(path=SCREENSHOTS / "member-360-phone.png", full_page=True)
    phone_page.context.close()
