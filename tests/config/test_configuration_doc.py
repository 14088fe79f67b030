"""docs/configuration.md documents exactly the keys the experiment YAML accepts: every key of every config
model has a row there, and every row names a key that exists, so the reference cannot drift from the code.

The keys are collected by walking the pydantic models from ``ExperimentConfig``, through nested models
(also inside ``X | None``, unions, lists and dicts). The doc holds one ``## <top-level key>`` section per
top-level key; each key is a table row whose first cell is its full dotted path in backticks
(``| `model.prune` | ... |``), in the section of its top-level key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from prunetuna.config import ExperimentConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
HEADING = re.compile(r"^## (\S+)\s*$")
KEY_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def _nested_models(annotation: Any, key: str) -> Iterator[tuple[type[BaseModel], str]]:
    """The models an annotation holds, with the dotted path of their fields' parent (``[]``: a list item,
    ``<name>``: a dict value)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, key
        return
    origin = get_origin(annotation)
    args = get_args(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping) and len(args) == 2:
        yield from _nested_models(args[1], f"{key}.<name>")
    elif isinstance(origin, type) and issubclass(origin, (Sequence, set, frozenset)) and not issubclass(origin, str):
        for arg in args:
            if arg is not Ellipsis:
                yield from _nested_models(arg, f"{key}[]")
    else:  # X | None, Union, Annotated, Literal (whose args are values, not types)
        for arg in args:
            yield from _nested_models(arg, key)


def config_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "", seen: tuple[type, ...] = ()) -> set[str]:
    """Every dotted key of ``model``: its fields and, recursively, the fields of the models they hold."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.add(key)
        for nested, path in _nested_models(field.annotation, key):
            if nested not in seen:
                keys |= config_keys(nested, f"{path}.", (*seen, model))
    return keys


def documented_keys(text: str) -> tuple[list[str], list[str], list[str]]:
    """The doc's ``##`` sections, its key rows in order, and the rows outside their top-level key's section."""
    sections: list[str] = []
    keys: list[str] = []
    misplaced: list[str] = []
    section = None
    for line in text.splitlines():
        heading = HEADING.match(line)
        if heading:
            section = heading.group(1)
            sections.append(section)
            continue
        row = KEY_ROW.match(line)
        if row:
            key = row.group(1)
            keys.append(key)
            if re.split(r"[.\[]", key, maxsplit=1)[0] != section:
                misplaced.append(f"{key} (under '## {section}')")
    return sections, keys, misplaced


def test_the_walk_finds_nested_keys() -> None:
    keys = config_keys()
    assert {
        "name",
        "model.prune",
        "metric.name",
        "finetune.trainer.precision",
        "finetune.distill.temperature",
        "pruning.bounds_from_sensitivity.max_drop",
        "search.screening.min_dominating",
        "latency.url",
    } <= keys


def test_the_walk_reaches_models_in_optionals_unions_lists_and_dicts() -> None:
    class Leaf(BaseModel):
        x: int = 0

    class Other(BaseModel):
        y: int = 0

    class Root(BaseModel):
        maybe: Leaf | None = None
        either: Leaf | Other = Leaf()
        many: list[Leaf] = []
        named: dict[str, Leaf] = {}

    assert config_keys(Root) == {
        "maybe",
        "maybe.x",
        "either",
        "either.x",
        "either.y",
        "many",
        "many[].x",
        "named",
        "named.<name>.x",
    }


def test_configuration_doc_matches_the_config_models() -> None:
    sections, rows, misplaced = documented_keys(DOC.read_text(encoding="utf-8"))
    expected = config_keys()
    documented = set(rows)
    missing = sorted(expected - documented)
    unknown = sorted(documented - expected)
    twice = sorted({key for key in rows if rows.count(key) > 1})
    top_level = list(ExperimentConfig.model_fields)
    problems = []
    if missing:
        problems.append(f"keys of the config models with no row in {DOC.name}: {', '.join(missing)}")
    if unknown:
        problems.append(f"rows in {DOC.name} naming no key of the config models: {', '.join(unknown)}")
    if twice:
        problems.append(f"keys documented more than once: {', '.join(twice)}")
    if misplaced:
        problems.append(f"rows outside the section of their top-level key: {', '.join(misplaced)}")
    if sections != top_level:
        problems.append(f"'## ' sections should be the top-level keys in order {top_level}, got {sections}")
    assert not problems, "\n".join(problems)
