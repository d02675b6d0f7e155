"""Staff access rules: masking, scopes, role requirements, throttling; and the console's
catalogue covers every message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from quanyu.domain.access import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    Scope,
    Throttle,
    mask_email,
    mask_key_text,
    mask_phone,
    staff_scope,
    validate_staff,
)
from quanyu.domain.errors import TooManyAttempts, ValidationFailed
from quanyu.entrypoints.console import i18n

T = datetime(2026, 3, 2, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def test_a_phone_keeps_its_first_three_and_last_four_digits() -> None:
    assert mask_phone("+8613812345678") == "138****5678"
    assert mask_phone("13812345678") == "138****5678"


def test_an_email_keeps_its_first_letter_and_domain() -> None:
    assert mask_email("zhang.wei@example.com") == "z***@example.com"


def test_identity_keys_inside_history_text_are_masked() -> None:
    text = "phone:+8613812345678, email:li@example.com, wechat_openid:wx:o123"
    assert mask_key_text(text) == "phone:138****5678, email:l***@example.com, wechat_openid:wx:o123"


def test_hq_roles_see_every_member_and_others_only_their_stores_region_or_bound_members() -> None:
    for role in (Role.HQ_ADMIN, Role.HQ_OPERATOR, Role.ANALYST):
        assert staff_scope(role, store_ids=[], region_store_ids=[], guide_id=None).everything
    store = staff_scope(Role.STORE_MANAGER, store_ids=[1], region_store_ids=[1, 2], guide_id=None)
    assert store.allows(stores=[1], guide=None) and not store.allows(stores=[2], guide=None)
    region = staff_scope(Role.REGION_MANAGER, store_ids=[], region_store_ids=[1, 2], guide_id=None)
    assert region.allows(stores=[None, 2], guide=None)
    guide = staff_scope(Role.GUIDE, store_ids=[], region_store_ids=[], guide_id=7)
    assert guide.allows(stores=[1], guide=7) and not guide.allows(stores=[1], guide=8)
    assert Scope().nothing


def test_only_an_admin_manages_staff_and_only_keys_ingest_orders() -> None:
    managers = [r for r, perms in ROLE_PERMISSIONS.items() if Permission.MANAGE_STAFF in perms]
    assert managers == [Role.HQ_ADMIN]
    assert not any(Permission.INGEST_ORDERS in perms for perms in ROLE_PERMISSIONS.values())
    assert Permission.REVEAL_PII not in ROLE_PERMISSIONS[Role.ANALYST]


@pytest.mark.parametrize(
    ("role", "scope", "field"),
    [
        (Role.STORE_MANAGER, {}, "stores"),
        (Role.REGION_MANAGER, {}, "region"),
        (Role.GUIDE, {}, "guide"),
        (Role.ANALYST, {"stores": ["S1"]}, "stores"),
        (Role.STORE_MANAGER, {"stores": ["S1"], "region": "East"}, "region"),
    ],
)
def test_a_scoped_role_needs_its_scope_and_nothing_else(
    role: Role, scope: dict[str, object], field: str
) -> None:
    args = {"stores": [], "region": None, "guide": None, **scope}
    with pytest.raises(ValidationFailed) as failed:
        validate_staff(role=role, **args)  # type: ignore[arg-type]
    assert failed.value.field == field


def test_the_sixth_failed_login_within_the_window_waits_for_the_oldest_to_age_out() -> None:
    throttle = Throttle(per_account=5, per_address=20, window=timedelta(minutes=15))
    failures = [T + timedelta(minutes=i) for i in range(5)]
    now = T + timedelta(minutes=5)
    with pytest.raises(TooManyAttempts) as throttled:
        throttle.check(account_failures=failures, address_failures=[], now=now)
    assert throttled.value.retry_after == 10 * 60 + 1
    throttle.check(
        account_failures=failures, address_failures=[], now=T + timedelta(minutes=15, seconds=1)
    )


def test_the_language_is_the_saved_one_else_the_browsers_else_chinese() -> None:
    assert i18n.negotiate("en", "zh-CN,zh;q=0.9") == "en"
    assert i18n.negotiate(None, "en-GB,en;q=0.8") == "en"
    assert i18n.negotiate(None, "fr-FR, zh-TW;q=0.5") == "zh-CN"
    assert i18n.negotiate(None, None) == "zh-CN"


def test_money_and_dates_follow_the_language() -> None:
    zh = i18n.Formats("zh-CN", ZoneInfo("Asia/Shanghai"))
    en = i18n.Formats("en", ZoneInfo("Asia/Shanghai"))
    assert zh.money(123450) == "¥1,234.50"
    assert en.money(123450) == "CN¥1,234.50"
    assert zh.date(T) == "2026年3月2日"
    assert en.date(T) == "Mar 2, 2026"


def test_every_console_message_has_a_chinese_translation(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    args = ["extract", "-F", str(ROOT / "babel.cfg"), "-k", "N_", "--no-location"]
    CommandLineInterface().run(["pybabel", "-q", *args, "-o", str(pot), str(ROOT)])
    with pot.open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    po = i18n.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        have = {m.id: m.string for m in read_po(fh) if m.id}
    untranslated = sorted(m for m in wanted if not have.get(m))
    assert untranslated == [], "run scripts/update-translations and translate these"
