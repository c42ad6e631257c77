"""The mapping vocabulary and its loader: what loads, and the exact message for everything that does not.

Messages name the file and the key path so a person can fix a folder of mappings in one pass."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from replicator.errors import ConfigError
from replicator.mapping.loader import describe_errors, key_path, load_mappings, mapping_files
from replicator.mapping.ops import Policy
from replicator.mapping.spec import FieldSpec, MappingSet, mapping_json_schema, value_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mappings" / "examples" / "customers.yaml"
SCHEMA = ROOT / "schemas" / "mapping.schema.json"

SYSTEMS = """
systems:
  shop: {kind: mariadb, priority: 2, source_name: shop, namespace: prestashop}
  erp: {kind: postgresql, priority: 1, source_name: erp}
"""

CUSTOMER_RULE = """
  - name: customers
    source: {system: shop, table: ps_customer, key: [id_customer]}
    target: {system: erp, table: res_partner}
    identity: customer
    on_delete: hard
    fields:
      email: email
"""

IDENTIFIER_RULE_TEXT = (
    "is not a plain table or column name (use letters, digits, '_' and '$', start with a letter or '_', "
    "at most 63 characters; names are never SQL)"
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_mappings(path)
    return caught.value.problems


def one_rule(tmp_path: Path, rule: str, systems: str = SYSTEMS) -> Path:
    return write(tmp_path, "m.yaml", systems + "rules:\n" + textwrap.indent(textwrap.dedent(rule), "  "))


# --- what loads ------------------------------------------------------------------------------------------


def test_the_example_loads_with_every_rule_located() -> None:
    mappings = load_mappings(EXAMPLE)

    assert sorted(mappings.systems) == ["erp", "shop"]
    assert [r.name for r in mappings.rules][:3] == [
        "shop_customer_to_partner",
        "shop_address_to_partner",
        "shop_country_link",
    ]
    assert mappings.location(mappings.rules[2]) == f"{EXAMPLE}: rules[2]"
    assert mappings.qualified(mappings.rules[0].target) == "public.res_partner"
    assert mappings.qualified(mappings.rules[0].source) == "prestashop.ps_customer"


def test_short_forms_expand() -> None:
    mappings = MappingSet.model_validate(yaml.safe_load(SYSTEMS + "rules:" + CUSTOMER_RULE))
    rule = mappings.rules[0]

    assert rule.fields["email"].from_ == "email"
    assert rule.identity is not None and rule.identity.entity == "customer"
    assert rule.on_delete is not None and rule.on_delete.mode == "hard"
    assert rule.fields["email"].effective_policy is Policy.LAST_WRITER_WINS


def test_map_keys_of_any_yaml_type_compare_as_text() -> None:
    spec = FieldSpec.model_validate(yaml.safe_load("{from: s, map: {values: {1: a, false: b, x: 3}}}"))

    assert spec.map is not None
    assert spec.map.values == {"1": "a", "false": "b", "x": 3}
    assert [value_text(v) for v in (1, True, "1", 2.5, None)] == ["1", "true", "1", "2.5", "None"]


def test_owner_alone_implies_the_owner_policy_and_order_entries_may_share_a_rank() -> None:
    owned = FieldSpec.model_validate({"from": "note", "owner": "erp"})
    ranked = FieldSpec.model_validate({"from": "s", "policy": "monotonic", "order": [[1, 10], 2, "x"]})

    assert owned.effective_policy is Policy.OWNER
    assert ranked.ranks() == {"1": 0, "10": 0, "2": 1, "x": 2}


def test_a_folder_merges_its_files_and_skips_sub_folders(tmp_path: Path) -> None:
    write(tmp_path, "a_systems.yaml", SYSTEMS)
    write(tmp_path, "b_rules.yml", "rules:" + CUSTOMER_RULE)
    (tmp_path / "examples").mkdir()
    write(tmp_path / "examples", "broken.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "ignored")

    mappings = load_mappings(tmp_path)

    assert mapping_files(tmp_path) == [tmp_path / "a_systems.yaml", tmp_path / "b_rules.yml"]
    assert [r.name for r in mappings.rules] == ["customers"]
    assert mappings.location(mappings.rules[0]) == f"{tmp_path / 'b_rules.yml'}: rules[0]"


def test_with_namespace_moves_a_system_and_keeps_locations() -> None:
    mappings = load_mappings(EXAMPLE).with_namespace("shop", "t_123")

    assert mappings.qualified(mappings.rules[0].source) == "t_123.ps_customer"
    assert mappings.location(mappings.rules[0]) == f"{EXAMPLE}: rules[0]"


# --- bad input: every problem, with file and key path ----------------------------------------------------


def test_an_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    path = one_rule(tmp_path, CUSTOMER_RULE.replace("email: email", "email: {from: email, polcy: owner}"))

    assert problems_of(path) == [f"{path}: rules[0].fields.email.polcy: unknown key"]


def test_sql_in_any_identifier_is_refused(tmp_path: Path) -> None:
    rule = CUSTOMER_RULE.replace("table: res_partner", 'table: "res_partner WHERE 1=1"').replace(
        "email: email", 'email: "email); DROP TABLE x; --"'
    )
    path = one_rule(tmp_path, rule)

    assert problems_of(path) == [
        f"{path}: rules[0].target.table: 'res_partner WHERE 1=1' {IDENTIFIER_RULE_TEXT}",
        f"{path}: rules[0].fields.email.from: 'email); DROP TABLE x; --' {IDENTIFIER_RULE_TEXT}",
    ]


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", SYSTEMS + "rules:" + CUSTOMER_RULE.replace("hard", "sometimes"))
    second = write(tmp_path, "b.yaml", "rules:\n  - name: x\n    sorce: {}\n")
    third = write(tmp_path, "c.yaml", "rules: [")

    problems = problems_of(tmp_path)

    assert problems[0] == (f"{first}: rules[0].on_delete.mode: Input should be 'hard', 'soft', 'ignore' or 'recompute'")
    assert problems[1:4] == [
        f"{second}: rules[0].source: required key is missing",
        f"{second}: rules[0].target: required key is missing",
        f"{second}: rules[0].sorce: unknown key",
    ]
    assert problems[4].startswith(f"{third}: not valid YAML: ")
    assert len(problems) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("email: email", "email: {from: email, policy: monotonic}"),
         "rules[0].fields.email: policy 'monotonic' needs 'order' (the values from lowest to highest rank) "
         "or 'rank_by'"),
        (("email: email", "email: {from: s, map: {values: {1: a, 2: b}}, policy: monotonic, order: [a]}"),
         "rules[0].fields.email: mapped values b are not in 'order'"),
        (("email: email", "email: {from: s, policy: monotonic, order: [a, [b, a]]}"),
         "rules[0].fields.email: a value appears twice in 'order'"),
        (("email: email", "email: {from: email, policy: owner}"),
         "rules[0].fields.email: policy 'owner' needs 'owner: <system>'"),
        (("email: email", "email: {from: email, owner: crm}"),
         "rules[0]: fields.email: owner 'crm' is neither erp nor shop"),
        (("email: email", "email: {from: email, owner: erp, policy: delta}"),
         "rules[0].fields.email: 'owner' goes with policy 'owner', not 'delta'"),
        (("email: email", "email: {concat: [a, b], policy: delta}"),
         "rules[0].fields.email: policy 'delta' needs 'from': a numeric source column"),
        (("email: email", "email: {from: a, normalize: [trim], policy: delta}"),
         "rules[0].fields.email: policy 'delta' takes a number as it is: only 'cast: int' or 'cast: decimal'"),
        (("email: email", "email: {from: a, const: 1}"),
         "rules[0].fields.email: give exactly one value source of from, concat, split, const, lookup, aggregate "
         "(found from, const)"),
        (("email: email", "email: {separator: '-'}"),
         "rules[0].fields.email: give exactly one value source of from, concat, split, const, lookup, aggregate"),
        (("email: email", "email: {from: a, scale: 2}"), "rules[0].fields.email: 'scale' goes with 'cast: decimal'"),
        (("email: email", "email: {from: a, tz: {from: Mars/Olympus, to: UTC}}"),
         "rules[0].fields.email.tz.from: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris "
         "or UTC)"),
        (("email: email", "email: {from: a, normalize: [titlecase]}"),
         "rules[0].fields.email.normalize[0]: Input should be 'trim', 'lower', 'upper' or 'collapse_whitespace'"),
        (("email: email", "email: {lookup: {identity: customer}}"),
         "rules[0].fields.email.lookup: an identity lookup needs both 'identity' (the entity) and 'from' "
         "(a source column)"),
        (("email: email", "email: {lookup: {identity: customer, from: a, table: t}}"),
         "rules[0].fields.email.lookup: an identity lookup returning a column of the identified row needs 'table' "
         "and 'returns'"),
        (("email: email", "email: {lookup: {identity: customer, from: a, match: {x: y}}}"),
         "rules[0].fields.email.lookup: give either 'identity' and 'from', or 'table' and 'match' "
         "(and maybe 'returns')"),
        (("email: email", "email: {aggregate: {table: t, group_by: {a: b}}}"),
         "rules[0].fields.email.aggregate[0]: 'sum' needs 'of' (the summed columns)"),
        (("email: email", "email: {aggregate: [], cast: int}"),
         "rules[0].fields.email: 'aggregate' needs at least one term"),
        (("email: email", "email: {aggregate: {table: t, of: [q], group_by: {a: b}}, policy: monotonic, "
                          "order: [1]}"),
         "rules[0].fields.email: an aggregate is an absolute value: use last_writer_wins or owner"),
        (("email: email", "email: {from: a, rank_by: b, policy: monotonic}"),
         "rules[0]: fields.email.rank_by: 'b' is not a monotonic field with 'order'"),
        (("on_delete: hard", "on_delete: {mode: soft, column: active}"),
         "rules[0].on_delete: a soft delete needs 'column' and 'value' (e.g. column: active, value: false)"),
        (("on_delete: hard", "on_delete: recompute"), "rules[0]: on_delete 'recompute' needs aggregate fields"),
        (("    on_delete: hard\n", ""),
         "rules[0]: say what a source delete does: on_delete: hard | ignore | recompute | {mode: soft, ...}"),
        (("identity: customer", "identity: customer\n    key: {id: id_customer}"),
         "rules[0]: give exactly one of 'key' (target key columns) or 'identity' (an entity)"),
        (("identity: customer", "identity: customer\n    mode: append"),
         "rules[0]: an append rule inserts rows with the target's own keys: no key, identity or match_on"),
        (("identity: customer", "identity: customer\n    match_on: [phone]"),
         "rules[0]: match_on columns phone must be mapped in 'fields'"),
        (("identity: customer", "identity: customer\n    filter: [{column: a, eq: 1, ne: 2}]"),
         "rules[0].filter[0]: give exactly one operator of eq, ne, in, not_in, is_null, not_null, gt, ge, lt, "
         "le, starts_with"),
        (("identity: customer", "identity: customer\n    filter: [{column: a, ge: x}]"),
         "rules[0].filter[0].ge: expected a number, got 'x'"),
        (("system: erp, table: res_partner", "system: shop, table: res_partner"),
         "rules[0]: source and target are the same system"),
        (("name: customers", "name: 'two words'"),
         "rules[0].name: 'two words' is not a rule name (letters, digits, '_', '.', '-'; at most 128)"),
    ],
)  # fmt: skip
def test_a_rule_mistake_gets_one_clear_message(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in CUSTOMER_RULE
    path = one_rule(tmp_path, CUSTOMER_RULE.replace(old, new))

    assert problems_of(path) == [f"{path}: {message}"]


def test_systems_need_a_namespace_for_mariadb_and_distinct_priorities(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        """
        systems:
          shop: {kind: mariadb, priority: 1, source_name: shop}
          erp: {kind: postgresql, priority: 1, source_name: erp}
          crm: {kind: postgresql, priority: 3, source_name: erp}
        """,
    )
    first = problems_of(path)
    path.write_text(path.read_text().replace("source_name: shop}", "source_name: shop, namespace: ps}"))

    assert first == [f"{path}: systems.shop: a mariadb system needs 'namespace': the database that holds its tables"]
    assert problems_of(path) == [
        "systems.erp.priority: 1 is also shop's (ties could not be broken)",
        "systems.crm.source_name: 'erp' is also erp's (events could not be told apart)",
    ]


def test_cross_rule_problems_name_both_places(tmp_path: Path) -> None:
    second = CUSTOMER_RULE.replace("name: customers", "name: customers_again").replace(
        "email: email", "email: {from: email, owner: shop}\n      parent_id: {lookup: {identity: company, from: x}}"
    )
    third = CUSTOMER_RULE.replace("table: res_partner", "table: res_users").replace("name: customers", "name: users")
    path = one_rule(tmp_path, CUSTOMER_RULE + second + third + CUSTOMER_RULE.replace("system: shop", "system: pos"))

    assert problems_of(path) == [
        f"{path}: rules[3].name: rule name 'customers' is also used at {path}: rules[0]",
        f"{path}: rules[3].source.system: unknown system 'pos' (systems: erp, shop)",
        f"{path}: rules[1].fields.email.policy: erp.public.res_partner.email is written with owner: shop here "
        f"but with last_writer_wins by rule 'customers' ({path}: rules[0])",
        f"{path}: rules[2].identity: entity 'customer' is erp.res_partner at {path}: rules[0], not erp.res_users",
        f"{path}: rules[1].fields.parent_id.lookup.identity: unknown entity 'company' (entities: customer)",
    ]


def test_a_lookup_needs_an_entity_linking_the_rules_systems(tmp_path: Path) -> None:
    systems = SYSTEMS + "  crm: {kind: postgresql, priority: 3, source_name: crm}\n"
    lookup = (
        CUSTOMER_RULE.replace("name: customers", "name: leads")
        .replace("system: shop", "system: crm")
        .replace("email: email", "email: email\n      owner_id: {lookup: {identity: customer, from: uid}}")
    )
    path = one_rule(tmp_path, CUSTOMER_RULE + lookup.replace("identity: customer\n", "identity: lead\n"), systems)

    assert problems_of(path) == [
        f"{path}: rules[1].fields.owner_id.lookup.identity: no rule links entity 'customer' between crm and erp"
    ]


def test_a_mapping_set_built_in_code_is_cross_checked_too() -> None:
    document = yaml.safe_load(SYSTEMS + "rules:" + CUSTOMER_RULE + CUSTOMER_RULE)

    with pytest.raises(ValidationError) as caught:
        MappingSet.model_validate(document)

    assert describe_errors(caught.value) == [
        "(top level): rules[1].name: rule name 'customers' is also used at rules[0]"
    ]


def test_two_rules_dating_one_table_by_different_local_times_are_refused(tmp_path: Path) -> None:
    back = """
  - name: {name}
    source: {{system: erp, table: res_partner, key: [id]}}
    target: {{system: shop, table: ps_customer, local_time: {{column: {column}, tz: {tz}}}}}
    mode: update
    key: {{id_customer: x_shop_id}}
    on_delete: ignore
    fields:
      {field}: {field}
"""
    path = one_rule(tmp_path, CUSTOMER_RULE
                    + back.format(name="emails", column="date_upd", tz="Europe/Paris", field="email")
                    + back.format(name="phones", column="date_upd", tz="Europe/Paris", field="phone")
                    + back.format(name="names", column="date_add", tz="UTC", field="lastname"))

    assert problems_of(path) == [
        f"{path}: rules[3].target.local_time: shop ps_customer is dated by date_add (UTC) here but by date_upd "
        f"(Europe/Paris) in {path}: rules[1]"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", "expected a mapping with 'systems' and/or 'rules' at the top level"),
        ("systems: {shop: {kind: oracle, priority: 1, source_name: s}}\n",
         "systems.shop.kind: Input should be 'mariadb' or 'postgresql'"),
    ],
)  # fmt: skip
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "m.yaml", text)

    assert problems_of(path) == [f"{path}: {message}"]


def test_an_empty_folder_and_a_missing_file_are_errors(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [f"{tmp_path}: no mapping files (*.yaml, *.yml)"]
    assert problems_of(tmp_path / "gone.yaml") == [f"{tmp_path / 'gone.yaml'}: cannot read: No such file or directory"]


def test_a_system_defined_differently_in_two_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SYSTEMS)
    second = write(tmp_path, "b.yaml", SYSTEMS.replace("priority: 2", "priority: 3"))

    assert problems_of(tmp_path) == [f"{second}: systems.shop: differs from its definition in {tmp_path / 'a.yaml'}"]


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("rules", 2, "fields", "email", "policy"), "rules[2].fields.email.policy"),
        (("rules", 0, "fields", "a b", "[key]"), "rules[0].fields['a b']"),
        ((), "(top level)"),
    ],
)
def test_key_paths(loc: tuple[Any, ...], text: str) -> None:
    assert key_path(loc) == text


# --- the JSON schema ----------------------------------------------------------------------------------------


def test_the_checked_in_json_schema_is_current() -> None:
    expected = json.dumps(mapping_json_schema(), indent=2, sort_keys=True) + "\n"
    current = SCHEMA.read_text() if SCHEMA.exists() else ""

    assert current == expected, (
        f"{SCHEMA.relative_to(ROOT)} is out of date with replicator/mapping/spec.py; regenerate it with:\n"
        "    .venv/bin/python -m replicator.mapping.spec schemas/mapping.schema.json"
    )


def test_the_json_schema_describes_the_vocabulary() -> None:
    schema = mapping_json_schema()
    field = schema["$defs"]["FieldSpec"]

    assert schema["additionalProperties"] is False
    assert {"from", "concat", "split", "const", "lookup", "aggregate", "map", "tz", "cast", "policy", "order"} <= set(
        field["properties"]
    )
    assert field["additionalProperties"] is False
