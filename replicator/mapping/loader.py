"""Load mapping YAML files into one checked `MappingSet`, reporting every problem at once.

Each message names the file and the key path (`mappings/x.yaml: rules[2].fields.email.policy: ...`), so
a person can fix a whole folder in one pass. Checks that need more than one rule (rule names, entities,
a target column written under two policies) run after every file has been read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from replicator.errors import ConfigError
from replicator.mapping.ops import Policy
from replicator.mapping.spec import FieldSpec, MappingDocument, MappingSet, RuleSpec, SystemSpec, ValueSpec

_YAML_SUFFIXES = (".yaml", ".yml")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

LocatedRule = tuple[str, RuleSpec]


def mapping_files(path: Path) -> list[Path]:
    """The YAML files of a folder (not its sub-folders: examples stay apart), or the one file given."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _YAML_SUFFIXES)
    return [path]


def load_mappings(path: Path | str) -> MappingSet:
    """Read every mapping file of `path` (a folder or one file) into one MappingSet.

    Raises ConfigError listing every problem of every file."""
    path = Path(path)
    files = mapping_files(path)
    if not files:
        raise ConfigError(f"{path}: no mapping files (*.yaml, *.yml)")
    problems: list[str] = []
    documents: list[tuple[Path, MappingDocument]] = []
    for file in files:
        document = _read_document(file, problems)
        if document is not None:
            documents.append((file, document))
    systems = _merge_systems(documents, problems)
    located = [(f"{file}: rules[{i}]", rule) for file, doc in documents for i, rule in enumerate(doc.rules)]
    if not problems:
        problems.extend(cross_check(systems, located))
    if problems:
        raise ConfigError(problems)
    mapping_set = MappingSet(systems=systems, rules=[rule for _, rule in located])
    mapping_set._locations = {rule.name: where for where, rule in located}
    return mapping_set


def _read_document(file: Path, problems: list[str]) -> MappingDocument | None:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"{file}: cannot read: {exc.strerror}")
        return None
    except yaml.YAMLError as exc:
        problems.append(f"{file}: not valid YAML: {exc}")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{file}: expected a mapping with 'systems' and/or 'rules' at the top level")
        return None
    try:
        return MappingDocument.model_validate(raw)
    except ValidationError as exc:
        problems.extend(f"{file}: {problem}" for problem in describe_errors(exc))
        return None


def describe_errors(exc: ValidationError) -> list[str]:
    """pydantic's errors as 'key.path: message' lines."""
    return [f"{key_path(error['loc'])}: {_message(error['type'], error['msg'])}" for error in exc.errors()]


def key_path(loc: Iterable[int | str]) -> str:
    """('rules', 2, 'fields', 'email') -> 'rules[2].fields.email'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for a bad dict key: the key itself is already in the path
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


def _message(error_type: str, message: str) -> str:
    if error_type == "extra_forbidden":
        return "unknown key"
    if error_type == "missing":
        return "required key is missing"
    return message.removeprefix("Value error, ")


def _merge_systems(documents: list[tuple[Path, MappingDocument]], problems: list[str]) -> dict[str, SystemSpec]:
    systems: dict[str, SystemSpec] = {}
    defined_in: dict[str, Path] = {}
    for file, document in documents:
        for name, system in document.systems.items():
            if name in systems and systems[name] != system:
                problems.append(f"{file}: systems.{name}: differs from its definition in {defined_in[name]}")
            systems.setdefault(name, system)
            defined_in.setdefault(name, file)
    return systems


# --- checks across rules -----------------------------------------------------------------------------


def cross_check(systems: dict[str, SystemSpec], rules: list[LocatedRule]) -> list[str]:
    """Problems no single rule can see. `rules` pairs each rule with where it was written."""
    problems = _check_systems(systems)
    problems += _check_rule_names(rules)
    known = [(where, rule) for where, rule in rules if _check_rule_systems(where, rule, systems, problems)]
    problems += _check_shared_columns(systems, known)
    problems += _check_entities(known)
    problems += _check_when_written(known)
    problems += _check_local_times(systems, known)
    return problems


def _check_local_times(systems: dict[str, SystemSpec], rules: list[LocatedRule]) -> list[str]:
    """A table's `local_time` dates its own edits on both sides (the applier writing into it, and the
    engine reading its changes): two rules writing the table must not declare different ones."""
    problems = []
    seen: dict[tuple[str, str, str], tuple[str, Any]] = {}
    for where, rule in rules:
        local_time = rule.target.local_time
        if local_time is None:
            continue
        table = (rule.target.system, rule.target.namespace or systems[rule.target.system].default_namespace,
                 rule.target.table)
        first = seen.setdefault(table, (where, local_time))
        if first[1] != local_time:
            problems.append(
                f"{where}.target.local_time: {rule.target.system} {rule.target.table} is dated by "
                f"{local_time.column} ({local_time.tz}) here but by {first[1].column} ({first[1].tz}) in {first[0]}"
            )
    return problems


def _check_when_written(rules: list[LocatedRule]) -> list[str]:
    """`when_written` names an earlier rule of the same source table and one of its fields: the applier
    runs a change's rules in order, so the named write is known when the row is appended."""
    problems = []
    earlier: dict[str, RuleSpec] = {}
    for where, rule in rules:
        wanted = rule.when_written
        if wanted is not None:
            other = earlier.get(wanted.rule)
            if other is None:
                problems.append(f"{where}.when_written.rule: no earlier rule named {wanted.rule!r}")
            elif (other.source.system, other.source.table) != (rule.source.system, rule.source.table):
                problems.append(
                    f"{where}.when_written.rule: {wanted.rule!r} reads {other.source.system} {other.source.table}, "
                    f"not {rule.source.system} {rule.source.table}"
                )
            elif wanted.field not in other.fields:
                problems.append(f"{where}.when_written.field: rule {wanted.rule!r} has no field {wanted.field!r}")
        earlier[rule.name] = rule
    return problems


def _check_systems(systems: dict[str, SystemSpec]) -> list[str]:
    problems = []
    for attribute, meaning in (
        ("priority", "ties could not be broken"),
        ("source_name", "events could not be told apart"),
    ):
        seen: dict[Any, str] = {}
        for name, system in systems.items():
            value = getattr(system, attribute)
            if value in seen:
                problems.append(f"systems.{name}.{attribute}: {value!r} is also {seen[value]}'s ({meaning})")
            seen.setdefault(value, name)
    return problems


def _check_rule_names(rules: list[LocatedRule]) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for where, rule in rules:
        if rule.name in seen:
            problems.append(f"{where}.name: rule name {rule.name!r} is also used at {seen[rule.name]}")
        seen.setdefault(rule.name, where)
    return problems


def _check_rule_systems(where: str, rule: RuleSpec, systems: dict[str, SystemSpec], problems: list[str]) -> bool:
    known = ", ".join(sorted(systems)) or "none"
    ok = True
    for side, ref in (("source", rule.source), ("target", rule.target)):
        if ref.system not in systems:
            problems.append(f"{where}.{side}.system: unknown system {ref.system!r} (systems: {known})")
            ok = False
    return ok


def _policy_signature(spec: FieldSpec) -> tuple[Any, ...]:
    order = tuple(map(str, spec.order)) if spec.order else None
    return (spec.effective_policy.value, spec.owner, order, spec.rank_by)


def _describe_policy(signature: tuple[Any, ...]) -> str:
    policy, owner, order, rank_by = signature
    if policy == Policy.OWNER.value:
        return f"owner: {owner}"
    if order is not None:
        return f"monotonic with order [{', '.join(order)}]"
    if rank_by is not None:
        return f"monotonic ranked by {rank_by}"
    return str(policy)


def _check_shared_columns(systems: dict[str, SystemSpec], rules: list[LocatedRule]) -> list[str]:
    """Every rule writing one target column must govern it by the same policy, or replicas would decide
    differently depending on which rule's change arrived."""
    problems = []
    first: dict[tuple[str, str, str, str], tuple[tuple[Any, ...], str, str]] = {}
    for where, rule in rules:
        namespace = rule.target.namespace or systems[rule.target.system].default_namespace
        for column, spec in rule.fields.items():
            target = (rule.target.system, namespace, rule.target.table, column)
            signature = _policy_signature(spec)
            if target not in first:
                first[target] = (signature, rule.name, where)
                continue
            other_signature, other_rule, other_where = first[target]
            if signature != other_signature:
                problems.append(
                    f"{where}.fields.{column}.policy: {'.'.join(target)} is written with "
                    f"{_describe_policy(signature)} here but with {_describe_policy(other_signature)} by rule "
                    f"{other_rule!r} ({other_where})"
                )
    return problems


def _lookups(rule: RuleSpec) -> Iterator[tuple[str, ValueSpec]]:
    for column, key_spec in (rule.key or {}).items():
        yield f"key.{column}", key_spec
    for column, field_spec in rule.fields.items():
        yield f"fields.{column}", field_spec


def _check_entities(rules: list[LocatedRule]) -> list[str]:
    problems = []
    links: dict[str, set[frozenset[str]]] = {}
    targets: dict[tuple[str, str], tuple[str, str]] = {}
    for where, rule in rules:
        if rule.identity is None:
            continue
        entity = rule.identity.entity
        links.setdefault(entity, set()).add(frozenset((rule.source.system, rule.target.system)))
        target = (entity, rule.target.system)
        if target in targets and targets[target][0] != rule.target.table:
            table, other = targets[target]
            problems.append(
                f"{where}.identity: entity {entity!r} is {rule.target.system}.{table} at {other}, "
                f"not {rule.target.system}.{rule.target.table}"
            )
        targets.setdefault(target, (rule.target.table, where))
    known = ", ".join(sorted(links)) or "none"
    for where, rule in rules:
        pair = frozenset((rule.source.system, rule.target.system))
        for path, spec in _lookups(rule):
            if spec.lookup is None or spec.lookup.identity is None:
                continue
            entity = spec.lookup.identity
            if entity not in links:
                problems.append(f"{where}.{path}.lookup.identity: unknown entity {entity!r} (entities: {known})")
            elif pair not in links[entity]:
                problems.append(
                    f"{where}.{path}.lookup.identity: no rule links entity {entity!r} between "
                    f"{rule.source.system} and {rule.target.system}"
                )
    return problems
