"""The domain error hierarchy: stable codes and structured fields."""

from __future__ import annotations

from quanyu.domain import errors
from quanyu.domain.errors import (
    AlreadyExists,
    BusinessRuleViolation,
    Conflict,
    IdempotencyConflict,
    InsufficientPoints,
    NotFound,
    QuanyuError,
    ValidationFailed,
)


def all_error_classes() -> list[type[QuanyuError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, QuanyuError)
    ]


def test_every_error_has_its_own_stable_code() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    assert all(code.isidentifier() and code == code.lower() for code in codes)


def test_validation_failed_names_the_field() -> None:
    error = ValidationFailed("bad", field="lines[0].sku", hint="x")
    assert error.field == "lines[0].sku"
    assert error.fields == {"field": "lines[0].sku", "hint": "x"}
    assert str(error) == error.detail == "bad"


def test_not_found_names_the_entity_and_key() -> None:
    error = NotFound("member", 42)
    assert str(error) == "member 42 does not exist"
    assert error.fields == {"entity": "member", "key": "42"}


def test_idempotency_conflict_lists_the_differing_fields_sorted() -> None:
    error = IdempotencyConflict("tmall/T-1", {"store": {}, "lines[0].quantity": {}})
    assert "differs in: lines[0].quantity, store" in error.detail
    assert isinstance(error, Conflict)


def test_idempotency_conflict_without_named_differences_says_payload() -> None:
    assert "differs in: payload" in IdempotencyConflict("k", {}).detail


def test_conflicts_and_rule_violations_sit_under_their_families() -> None:
    assert issubclass(AlreadyExists, Conflict)
    assert issubclass(InsufficientPoints, BusinessRuleViolation)
    assert all(issubclass(cls, QuanyuError) for cls in all_error_classes())
