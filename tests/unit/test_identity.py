"""OneID rules: key normalisation and the deterministic resolution plan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quanyu.domain.errors import ValidationFailed
from quanyu.domain.identity import (
    IdentityKey,
    IdentityType,
    ProfileRef,
    make_key,
    normalise_email,
    normalise_phone,
    plan_resolution,
)

# ----- phones


@pytest.mark.parametrize(
    "raw", ["13800138000", "138 0013 8000", "+86 138-0013-8000", "008613800138000"]
)
def test_phone_is_normalised_to_e164_with_cn_default(raw: str) -> None:
    assert normalise_phone(raw) == "+8613800138000"


def test_phone_with_a_country_code_keeps_its_country() -> None:
    assert normalise_phone("+1 650 253 0000") == "+16502530000"


def test_phone_default_region_applies_to_national_numbers() -> None:
    assert normalise_phone("(650) 253-0000", "US") == "+16502530000"


@pytest.mark.parametrize("raw", ["12345", "not a phone", "", "+86 1380013800"])
def test_invalid_phone_raises_validation_failed_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        normalise_phone(raw, field="mobile")
    assert err.value.field == "mobile"
    assert err.value.code == "validation_failed"


# ----- e-mail


def test_email_is_trimmed_and_case_folded() -> None:
    assert normalise_email("  Alice.Wang@Example.COM ") == "alice.wang@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "alice",
        "@example.com",
        "alice@",
        "alice@example",
        "alice@.com",
        "alice wang@example.com",
        "alice\twang@example.com",
        "alice@bob@example.com",
    ],
)
def test_malformed_email_is_rejected_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        normalise_email(raw, field="contact")
    assert err.value.field == "contact"


# ----- keys


def test_make_key_accepts_a_type_name_or_an_enum_member() -> None:
    assert make_key("member_card", "c1") == make_key(IdentityType.MEMBER_CARD, "c1")


def test_phone_key_holds_the_e164_form() -> None:
    assert make_key("phone", " 138 0013 8000 ") == IdentityKey(
        IdentityType.PHONE, "", "+8613800138000"
    )


def test_phone_key_uses_the_given_default_region() -> None:
    key = make_key("phone", "(650) 253-0000", default_region="US")
    assert key.value == "+16502530000"


def test_invalid_phone_key_names_the_value_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        make_key("phone", "12345", field="identities[2]")
    assert err.value.field == "identities[2].value"


def test_email_keys_differing_only_in_case_and_spacing_are_equal() -> None:
    assert make_key("email", " A@B.cn") == make_key("email", "a@b.cn")


def test_member_card_numbers_are_upper_cased() -> None:
    assert make_key("member_card", "vip-00a1").value == "VIP-00A1"


@pytest.mark.parametrize("type_", ["wechat_unionid", "wechat_openid", "platform_buyer"])
def test_platform_ids_keep_their_case(type_: str) -> None:
    assert make_key(type_, "oAbC123", "app1").value == "oAbC123"


def test_unknown_identity_type_is_rejected_naming_the_type_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        make_key("fax", "123", field="identities[0]")
    assert err.value.field == "identities[0].type"
    assert "phone" in err.value.detail


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_identity_value_is_rejected(value: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        make_key("member_card", value)
    assert err.value.field == "identities.value"


@pytest.mark.parametrize("type_", ["wechat_openid", "platform_buyer"])
@pytest.mark.parametrize("namespace", [None, "", "  "])
def test_namespaced_identity_needs_a_namespace(type_: str, namespace: str | None) -> None:
    with pytest.raises(ValidationFailed) as err:
        make_key(type_, "x1", namespace)
    assert err.value.field == "identities.namespace"


def test_namespace_is_trimmed() -> None:
    assert make_key("wechat_openid", "o1", " wx_app ").namespace == "wx_app"


@pytest.mark.parametrize("type_", ["phone", "email", "wechat_unionid", "member_card"])
def test_namespace_is_dropped_for_globally_unique_identities(type_: str) -> None:
    value = {"phone": "13800138000", "email": "a@b.cn"}.get(type_, "v1")
    assert make_key(type_, value, "ignored").namespace == ""


def test_same_openid_in_different_apps_is_a_different_key() -> None:
    assert make_key("wechat_openid", "o1", "app1") != make_key("wechat_openid", "o1", "app2")


def test_identity_key_prints_its_namespace_only_when_it_has_one() -> None:
    assert str(make_key("wechat_openid", "o1", "app1")) == "wechat_openid:app1:o1"
    assert str(make_key("member_card", "c1")) == "member_card:C1"


# ----- resolution

T = datetime(2024, 1, 1, tzinfo=UTC)
PHONE = make_key("phone", "13800138000")
EMAIL = make_key("email", "a@b.cn")
CARD = make_key("member_card", "C1")
OPENID = make_key("wechat_openid", "o1", "app1")


def profile(
    id_: int,
    *,
    member: bool = False,
    registered: datetime | None = None,
    created: datetime = T,
) -> ProfileRef:
    return ProfileRef(id=id_, is_member=member, registered_at=registered, created_at=created)


def at(month: int) -> datetime:
    return datetime(2024, month, 1, tzinfo=UTC)


def test_unknown_keys_plan_a_new_profile_with_every_key_new() -> None:
    plan = plan_resolution([PHONE, EMAIL], {})
    assert plan.survivor is None
    assert plan.absorbed == ()
    assert set(plan.new_keys) == {PHONE, EMAIL}


def test_no_keys_plan_a_new_profile_with_no_keys() -> None:
    plan = plan_resolution([], {})
    assert plan.survivor is None and plan.absorbed == () and plan.new_keys == ()


def test_keys_owned_by_one_profile_resolve_to_it_without_a_merge() -> None:
    owner = profile(5)
    plan = plan_resolution([PHONE, EMAIL, CARD], {PHONE: owner, EMAIL: owner})
    assert plan.survivor == owner
    assert plan.absorbed == ()
    assert plan.new_keys == (CARD,)


def test_member_survives_a_merge_with_an_older_customer() -> None:
    customer = profile(1, created=at(1))
    member = profile(2, member=True, registered=at(6), created=at(6))
    plan = plan_resolution([PHONE, EMAIL], {PHONE: customer, EMAIL: member})
    assert plan.survivor == member
    assert plan.absorbed == (customer,)


def test_earliest_registration_survives_among_members() -> None:
    older_profile = profile(1, member=True, registered=at(9), created=at(1))
    earlier_member = profile(2, member=True, registered=at(3), created=at(2))
    plan = plan_resolution([PHONE, EMAIL], {PHONE: older_profile, EMAIL: earlier_member})
    assert plan.survivor == earlier_member


def test_profile_without_registration_ranks_by_its_creation_time() -> None:
    registered_late = profile(1, member=True, registered=at(8), created=at(1))
    never_registered = profile(2, member=True, registered=None, created=at(4))
    plan = plan_resolution([PHONE, EMAIL], {PHONE: registered_late, EMAIL: never_registered})
    assert plan.survivor == never_registered


def test_oldest_profile_then_lowest_id_breaks_ties() -> None:
    newer = profile(1, registered=at(2), created=at(2))
    older = profile(3, registered=at(2), created=at(1))
    low_id = profile(2, registered=at(2), created=at(1))
    plan = plan_resolution([PHONE, EMAIL, CARD], {PHONE: newer, EMAIL: older, CARD: low_id})
    assert plan.survivor == low_id
    assert plan.absorbed == (older, newer)


def test_absorbed_profiles_are_listed_in_survivor_order() -> None:
    a, b, c = profile(30, created=at(3)), profile(10, created=at(1)), profile(20, created=at(2))
    plan = plan_resolution([PHONE, EMAIL, CARD], {PHONE: a, EMAIL: b, CARD: c})
    assert plan.survivor == b
    assert plan.absorbed == (c, a)


def test_resolution_ignores_duplicate_keys_and_lists_new_keys_in_key_order() -> None:
    plan = plan_resolution([OPENID, CARD, PHONE, CARD], {})
    assert plan.new_keys == tuple(sorted({OPENID, CARD, PHONE}))


def test_resolution_does_not_depend_on_the_order_of_keys() -> None:
    owners = {PHONE: profile(1, created=at(2)), EMAIL: profile(2, created=at(1))}
    keys = [PHONE, EMAIL, CARD, OPENID]
    assert plan_resolution(keys, owners) == plan_resolution(list(reversed(keys)), owners)
