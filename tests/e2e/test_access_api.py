"""Staff access through the API: set-up mode, integration keys, sessions with CSRF, data
scopes, masking with audited reveals, and login throttling."""

# ruff: noqa: F811
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api import API, PHONE, api, club, member, ok, order_json, problem  # noqa: F401

from conftest import phone
from quanyu.clock import FixedClock
from quanyu.domain.access import Role
from quanyu.domain.errors import NotAuthenticated, TooManyAttempts
from quanyu.entrypoints.api.app import create_app
from quanyu.entrypoints.api.auth import API_PREFIX, ROUTES, SESSION_COOKIE
from quanyu.services import access, members, points
from quanyu.services.uow import Platform

PASSWORD = "correct horse battery"


def staff(platform: Platform, username: str, role: Role, **scope: Any) -> None:
    access.create_staff(
        platform, username=username, password=PASSWORD, role=role, actor="test", **scope
    )


def logged_in(platform: Platform, username: str) -> TestClient:
    """A client holding ``username``'s session cookie, sending its CSRF token."""
    token, csrf = access.login(platform, username=username, password=PASSWORD, address="t")
    client = TestClient(create_app(platform))
    client.cookies.set(SESSION_COOKIE, token)
    client.headers["X-CSRF-Token"] = csrf
    return client


def other_member(api: TestClient) -> int:
    body = ok(
        api.post(
            f"{API}/members",
            json={"identities": [{"type": "phone", "value": phone(2)}], "store": "BJ01"},
        ),
        201,
    )
    return int(body["member_id"])


def test_every_api_route_names_the_permission_it_needs(platform: Platform) -> None:
    app = create_app(platform)
    routes = {
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(API_PREFIX)
        for method in operations
    }
    assert routes, "no API routes found"
    assert routes - set(ROUTES) == set()


def test_the_api_is_open_until_the_first_account_or_key_exists(
    platform: Platform, api: TestClient, member: int
) -> None:
    body = ok(api.get(f"{API}/members/{member}"))
    assert body["identities"][0]["value"].endswith(PHONE[-4:])
    access.create_key(platform, name="pos", actor="test")
    problem(api.get(f"{API}/members/{member}"), 401, "not_authenticated")


def test_orders_need_a_key_for_their_channel_and_store_once_keys_exist(
    platform: Platform, api: TestClient, club: None
) -> None:
    key = access.create_key(platform, name="SH POS", channels=["pos"], stores=["SH01"], actor="t")
    problem(api.post(f"{API}/orders", json=order_json("O-1")), 401, "not_authenticated")
    auth = {"Authorization": f"Bearer {key['key']}"}
    result = ok(api.post(f"{API}/orders", json=order_json("O-1"), headers=auth), 201)
    assert result["order_id"]
    elsewhere = order_json("O-2", store="BJ01")
    problem(api.post(f"{API}/orders", json=elsewhere, headers=auth), 403, "forbidden", "store")
    online = order_json("O-3", channel="tmall", store=None)
    problem(api.post(f"{API}/orders", json=online, headers=auth), 403, "forbidden", "channel")
    batch = ok(
        api.post(
            f"{API}/orders/batch",
            json={"items": [order_json("O-4"), elsewhere]},
            headers={"X-Api-Key": key["key"]},
        )
    )
    assert [i["ok"] for i in batch["items"]] == [True, False]
    assert batch["items"][1]["problem"]["status"] == 403
    # A key cannot reach set-up or analytics.
    problem(api.get(f"{API}/kpis/sales", headers=auth), 403, "forbidden")


def test_a_rotated_key_stops_working_and_its_successor_works(
    platform: Platform, api: TestClient, club: None, clock: FixedClock
) -> None:
    old = access.create_key(platform, name="mall", actor="t")
    new = access.rotate_key(platform, old["id"], grace_minutes=10, actor="t")
    for key in (old, new):
        ok(api.get(f"{API}/setup/stores", headers={"X-Api-Key": key["key"]}))
    clock.set(clock.now() + timedelta(minutes=11))
    problem(
        api.get(f"{API}/setup/stores", headers={"X-Api-Key": old["key"]}), 401, "not_authenticated"
    )
    access.revoke_key(platform, new["id"], actor="t")
    problem(
        api.get(f"{API}/setup/stores", headers={"X-Api-Key": new["key"]}), 401, "not_authenticated"
    )
    stored = {k["prefix"]: k for k in access.list_keys(platform)}
    assert not stored[old["prefix"]]["active"] and not stored[new["prefix"]]["active"]
    assert all("key" not in k and "secret_hash" not in k for k in stored.values())


def test_a_session_change_without_its_csrf_token_is_refused_and_one_with_it_is_audited(
    platform: Platform, api: TestClient, member: int
) -> None:
    staff(platform, "ops", Role.HQ_OPERATOR)
    client = logged_in(platform, "ops")
    adjustment = {"points": 10, "reason": "goodwill"}
    ok(client.post(f"{API}/members/{member}/points/adjustments", json=adjustment), 201)
    (audited,) = access.audit_entries(platform, action="points_adjust")
    assert (audited["actor"], audited["detail"]["points"]) == ("staff:ops", 10)
    del client.headers["X-CSRF-Token"]
    problem(
        client.post(f"{API}/members/{member}/points/adjustments", json=adjustment), 403, "forbidden"
    )


def test_a_store_manager_sees_only_the_members_of_their_stores(
    platform: Platform, api: TestClient, member: int
) -> None:
    beijing = other_member(api)
    staff(platform, "sh-manager", Role.STORE_MANAGER, stores=["SH01"])
    client = logged_in(platform, "sh-manager")
    ok(client.get(f"{API}/members/{member}"))
    for path in ("", "/points", "/identities", "/history", "/coupons", "/tier"):
        problem(client.get(f"{API}/members/{beijing}{path}"), 404, "not_found")
    problem(
        client.get(f"{API}/members/lookup", params={"type": "phone", "value": phone(2)}),
        404,
        "not_found",
    )
    problem(client.get(f"{API}/merges"), 403, "forbidden")


def test_a_guide_sees_only_their_bound_members(
    platform: Platform, api: TestClient, member: int
) -> None:
    unbound = other_member(api)
    staff(platform, "wang", Role.GUIDE, guide="G001")
    client = logged_in(platform, "wang")
    ok(client.get(f"{API}/members/{member}"))
    problem(client.get(f"{API}/members/{unbound}"), 404, "not_found")


def test_phone_is_masked_and_a_reveal_needs_permission_and_is_audited(
    platform: Platform, api: TestClient, member: int
) -> None:
    staff(platform, "analyst", Role.ANALYST)
    staff(platform, "ops", Role.HQ_OPERATOR)
    analyst = logged_in(platform, "analyst")
    shown = ok(analyst.get(f"{API}/members/{member}"))["identities"][0]["value"]
    assert shown == "138****0001"
    history = ok(analyst.get(f"{API}/members/{member}/history"))
    assert "0013" not in str(history)
    problem(analyst.post(f"{API}/members/{member}/reveal"), 403, "forbidden")
    assert access.audit_entries(platform, action="reveal") == []
    revealed = ok(logged_in(platform, "ops").post(f"{API}/members/{member}/reveal"))
    assert revealed[0]["value"] == "+8613800130001"
    (entry,) = access.audit_entries(platform, action="reveal")
    assert entry["actor"] == "staff:ops"
    assert entry["subject"] == f"member:{member}"


def test_failed_logins_are_throttled_per_account(platform: Platform, clock: FixedClock) -> None:
    staff(platform, "ops", Role.HQ_OPERATOR)
    for _ in range(5):
        with pytest.raises(NotAuthenticated):
            access.login(platform, username="ops", password="wrong password", address="a")
    with pytest.raises(TooManyAttempts) as throttled:
        access.login(platform, username="ops", password=PASSWORD, address="b")
    assert throttled.value.retry_after > 0
    clock.set(clock.now() + timedelta(minutes=16))
    token, _ = access.login(platform, username="ops", password=PASSWORD, address="b")
    assert token


def test_a_logged_out_or_deactivated_session_no_longer_works(
    platform: Platform, api: TestClient, member: int
) -> None:
    staff(platform, "ops", Role.HQ_OPERATOR)
    client = logged_in(platform, "ops")
    ok(client.get(f"{API}/me"))
    access.logout(platform, client.cookies[SESSION_COOKIE])
    problem(client.get(f"{API}/me"), 401, "not_authenticated")
    client = logged_in(platform, "ops")
    access.set_active(platform, "ops", active=False, actor="t")
    problem(client.get(f"{API}/me"), 401, "not_authenticated")


def test_staff_accounts_need_the_scope_their_role_implies(
    platform: Platform, api: TestClient, club: None
) -> None:
    staff(platform, "admin", Role.HQ_ADMIN)
    admin = logged_in(platform, "admin")
    base = {"password": PASSWORD}
    problem(
        admin.post(f"{API}/staff", json={**base, "username": "m1", "role": "store_manager"}),
        422,
        "validation_failed",
        "stores",
    )
    problem(
        admin.post(
            f"{API}/staff",
            json={**base, "username": "m2", "role": "store_manager", "stores": ["XX"]},
        ),
        422,
        "validation_failed",
        "stores[0]",
    )
    created = ok(
        admin.post(
            f"{API}/staff",
            json={**base, "username": "m3", "role": "region_manager", "region": "CN"},
        ),
        201,
    )
    assert "password_hash" not in created
    problem(
        admin.post(f"{API}/staff", json={**base, "username": "m3", "role": "analyst"}),
        409,
        "already_exists",
    )


def test_a_manual_tier_change_needs_permission_and_a_reason_and_is_audited(
    platform: Platform, api: TestClient, member: int
) -> None:
    staff(platform, "ops", Role.HQ_OPERATOR)
    staff(platform, "sh-manager", Role.STORE_MANAGER, stores=["SH01"])
    change = {"tier": "gold", "reason": "VIP guest of the brand"}
    manager = logged_in(platform, "sh-manager")
    problem(manager.post(f"{API}/members/{member}/tier", json=change), 403, "forbidden")
    ops = logged_in(platform, "ops")
    problem(
        ops.post(f"{API}/members/{member}/tier", json={"tier": "gold", "reason": " "}),
        422,
        "validation_failed",
        "reason",
    )
    problem(
        ops.post(f"{API}/members/{member}/tier", json={"tier": "diamond", "reason": "x"}),
        422,
        "validation_failed",
        "tier",
    )
    made = ok(ops.post(f"{API}/members/{member}/tier", json=change), 201)
    assert (made["from"], made["tier"]) == ("silver", "gold")
    assert ok(ops.get(f"{API}/members/{member}/tier"))["tier"] == "gold"
    (entry,) = access.audit_entries(platform, action="tier_change")
    assert entry["actor"] == "staff:ops"
    assert entry["detail"]["reason"] == "VIP guest of the brand"


def test_a_key_registers_members_and_checks_out_coupons_only_in_its_channel_and_store(
    platform: Platform, api: TestClient, club: None
) -> None:
    key = access.create_key(platform, name="SH POS", channels=["pos"], stores=["SH01"], actor="t")
    auth = {"Authorization": f"Bearer {key['key']}"}
    joined = {"identities": [{"type": "phone", "value": phone(5)}], "channel": "pos"}
    ok(api.post(f"{API}/members", json={**joined, "store": "SH01"}, headers=auth), 201)
    problem(
        api.post(f"{API}/members", json={**joined, "store": "BJ01"}, headers=auth),
        403,
        "forbidden",
        "store",
    )
    basket = {
        "channel": "tmall",
        "codes": ["NOPE"],
        "lines": [{"line_no": 1, "sku": "TEE-W-M", "quantity": 1, "amount": 9000}],
    }
    problem(api.post(f"{API}/coupons/validate", json=basket, headers=auth), 403, "forbidden")


def test_console_pages_answer_odd_member_ids_with_a_page_not_a_server_error(
    platform: Platform, api: TestClient, member: int
) -> None:
    staff(platform, "ops", Role.HQ_OPERATOR)
    client = logged_in(platform, "ops")
    for path, status in (
        ("/members/99999999999999999999", 422),
        ("/members/abc", 422),
        ("/members/0", 422),
        (f"/members/{member + 1000}", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html")
    anonymous = TestClient(create_app(platform))
    assert anonymous.get(f"/members/{member}", follow_redirects=False).status_code == 303


def test_a_store_manager_cannot_reach_another_stores_member_by_any_spelling_of_its_id(
    platform: Platform, api: TestClient, member: int
) -> None:
    beijing = other_member(api)
    staff(platform, "sh-manager", Role.STORE_MANAGER, stores=["SH01"])
    client = logged_in(platform, "sh-manager")
    for spelling in (f"{beijing}.0", f"+{beijing}", f"%20{beijing}"):
        response = client.get(f"{API}/members/{spelling}/tier")
        assert response.status_code in (404, 422), (spelling, response.text)
    adjust = {"points": 500, "reason": "x"}
    response = client.post(f"{API}/members/{beijing}.0/points/adjustments", json=adjust)
    assert response.status_code in (404, 422)
    problem(client.get(f"{API}/members/%C2%B2"), 422, "validation_failed")
    assert points.balance(platform, beijing)["total"] == 0


def test_a_store_manager_cannot_register_merge_or_check_out_another_stores_member(
    platform: Platform, api: TestClient, member: int
) -> None:
    beijing = other_member(api)
    staff(platform, "sh-manager", Role.STORE_MANAGER, stores=["SH01"])
    client = logged_in(platform, "sh-manager")
    theirs = {"type": "phone", "value": phone(2)}
    problem(
        client.post(f"{API}/members", json={"identities": [theirs], "store": "SH01"}),
        404,
        "not_found",
    )
    mine = {"type": "phone", "value": PHONE}
    problem(client.post(f"{API}/members", json={"identities": [mine, theirs]}), 404, "not_found")
    assert members.summary(platform, beijing)["id"] == beijing  # not merged away
    basket = {
        "channel": "pos",
        "store": "SH01",
        "lines": [{"line_no": 1, "sku": "TEE-W-M", "quantity": 1, "amount": 9000}],
    }
    for named in ({"member_id": beijing}, theirs):
        problem(
            client.post(f"{API}/coupons/validate", json={**basket, "member": named}),
            404,
            "not_found",
        )
    ok(client.post(f"{API}/coupons/validate", json={**basket, "member": {"member_id": member}}))


def test_merge_records_and_history_mask_phone_and_any_email_for_staff(
    platform: Platform, api: TestClient, member: int
) -> None:
    other = other_member(api)
    quoted = "o'neil,private@example.com"
    ok(
        api.post(
            f"{API}/members",
            json={
                "identities": [
                    {"type": "phone", "value": PHONE},
                    {"type": "email", "value": quoted},
                ]
            },
        )
    )
    ok(
        api.post(
            f"{API}/members",
            json={
                "identities": [
                    {"type": "phone", "value": PHONE},
                    {"type": "phone", "value": phone(2)},
                ]
            },
        )
    )
    (merge,) = ok(api.get(f"{API}/merges"))
    staff(platform, "admin", Role.HQ_ADMIN)
    admin = logged_in(platform, "admin")
    detail = admin.get(f"{API}/merges/{merge['id']}").text
    history = admin.get(f"{API}/members/{member}/history").text
    for text in (detail, history):
        assert "0013" not in text and "neil" not in text, text
    assert other in (merge["survivor_id"], merge["absorbed_id"])
