"""Prefix maps: whole-component matching, strip/add/replace, order, collisions."""

from __future__ import annotations

import pytest

from paraminspect.errors import UsageError
from paraminspect.naming.prefixes import NameMap, PrefixRule, parse_rename, strip_rule


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        (strip_rule("module."), "module.0.weight", "0.weight"),
        (strip_rule("module"), "module.0.weight", "0.weight"),
        (strip_rule("module."), "modules.0.weight", "modules.0.weight"),  # not a whole component
        (strip_rule("module."), "0.weight", "0.weight"),
        (strip_rule("module."), "module", "module"),  # would become empty: kept
        (parse_rename("enc=encoder"), "enc.layers.0.w", "encoder.layers.0.w"),
        (parse_rename("enc=encoder"), "encoder.layers.0.w", "encoder.layers.0.w"),
        (parse_rename("enc=encoder"), "enc", "encoder"),
        (parse_rename("=model."), "0.weight", "model.0.weight"),
        (parse_rename("a.b=c"), "a.b.x", "c.x"),
        (parse_rename("0.block 1=blk"), "0.block 1.0.bias", "blk.0.bias"),
    ],
)
def test_rule(rule: PrefixRule, name: str, expected: str) -> None:
    assert rule.apply(name) == expected


def test_rules_apply_in_order() -> None:
    mapping = NameMap.from_options(["module."], ["enc=encoder", "encoder=body"])
    assert mapping("module.enc.w") == "body.w"
    assert mapping.apply(["module.enc.w", "head.w"]) == {"body.w": "module.enc.w", "head.w": "head.w"}


def test_collision_names_both() -> None:
    with pytest.raises(UsageError, match=r"names 'module\.w' and 'w' both map to 'w'"):
        NameMap.from_options(["module"]).apply(["module.w", "w"])


@pytest.mark.parametrize("spec", ["noequals", "=", ".=."])
def test_bad_rename(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_rename(spec)


def test_empty_strip_prefix() -> None:
    with pytest.raises(UsageError):
        strip_rule(".")
