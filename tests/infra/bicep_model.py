"""The Bicep templates as data, read with pycep (the parser checkov uses; `.venv-infra` only).

pycep returns plain JSON-like data: literals as themselves, references to parameters and variables
as bare strings, function calls as ``{"function": {...}}`` and operators as ``{"operator": {...}}``.
The helpers here resolve variables so the tests can assert intent ("every app setting is set",
"no broad role is granted") without a Bicep compiler, which is not installable here.

pycep is imported lazily through importlib so that mypy in the app's `.venv`, where pycep is
absent, type-checks this package too.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep document of one template; raises when pycep cannot parse it."""
    parser = importlib.import_module("pycep").BicepParser()
    document = parser.parse(file_path=path)
    if not isinstance(document, dict):
        raise TypeError(f"pycep returned {type(document).__name__} for {path}")
    return document


def is_call(value: Any, name: str | None = None) -> bool:
    return isinstance(value, dict) and "function" in value and (name is None or value["function"]["type"] == name)


def is_operator(value: Any, name: str | None = None) -> bool:
    return isinstance(value, dict) and "operator" in value and (name is None or value["operator"]["type"] == name)


@dataclass(frozen=True)
class Resource:
    template: Template
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]  # the resource object, unwrapped from any loop or condition
    condition: Any  # None when unconditional
    looped: bool

    @property
    def properties(self) -> dict[str, Any]:
        value = self.template.deref(self.body.get("properties", {}))
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str  # relative to the calling template
    body: dict[str, Any]  # unwrapped from any loop or condition
    condition: Any
    looped: bool

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.body.get("params", {}))


@dataclass(frozen=True)
class Template:
    path: Path

    @property
    def document(self) -> dict[str, Any]:
        return parse(self.path)

    @property
    def name(self) -> str:
        return self.path.relative_to(INFRA).as_posix()

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.document.get("parameters", {}))

    @property
    def variables(self) -> dict[str, Any]:
        return {name: decl["value"] for name, decl in self.document.get("variables", {}).items()}

    @property
    def required_parameters(self) -> set[str]:
        # pycep gives every parameter a "default" key; None means the template declares none.
        return {name for name, decl in self.parameters.items() if decl.get("default") is None}

    @property
    def modules(self) -> dict[str, Module]:
        found = {}
        for symbol, decl in self.document.get("modules", {}).items():
            body, condition, looped = _unwrap(decl["config"])
            found[symbol] = Module(symbol, decl["detail"]["path"], body, condition, looped)
        return found

    def resources(self, type_: str | None = None) -> list[Resource]:
        found = []
        for symbol, decl in self.document.get("resources", {}).items():
            if type_ is not None and decl["type"] != type_:
                continue
            body, condition, looped = _unwrap(decl["config"])
            found.append(
                Resource(
                    self, symbol, decl["type"], decl["api_version"], bool(decl["existing"]), body, condition, looped
                )
            )
        return found

    def resource(self, symbol: str) -> Resource:
        matches = [r for r in self.resources() if r.symbol == symbol]
        if len(matches) != 1:
            raise KeyError(f"{self.name} has no resource {symbol!r}")
        return matches[0]

    def deref(self, value: Any, _seen: frozenset[str] = frozenset()) -> Any:
        """Follows a bare variable reference to the variable's value (transitively)."""
        variables = self.variables
        while isinstance(value, str) and value in variables and value not in _seen:
            _seen = _seen | {value}
            value = variables[value]
        return value

    def name_value_items(self, value: Any) -> dict[str, Any]:
        """An array of {name, value} objects (app settings) as a mapping; concat() and both
        branches of ?: included."""
        value = self.deref(value)
        found: dict[str, Any] = {}
        if is_call(value, "concat"):
            for argument in value["function"]["parameters"].values():
                found.update(self.name_value_items(argument))
        elif is_operator(value, "conditional"):
            operands = value["operator"]["operands"]
            found.update(self.name_value_items(operands["true_value"]))
            found.update(self.name_value_items(operands["false_value"]))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "name" in item:
                    found[item["name"]] = item.get("value")
        return found

    def strings(self, value: Any, _seen: frozenset[str] = frozenset()) -> set[str]:
        """Every string leaf of an expression, following variable references."""
        found: set[str] = set()
        if isinstance(value, str):
            found.add(value)
            if value in self.variables and value not in _seen:
                found |= self.strings(self.variables[value], _seen | {value})
        elif isinstance(value, dict):
            for key, item in value.items():
                found.add(key)
                found |= self.strings(item, _seen)
        elif isinstance(value, list):
            for item in value:
                found |= self.strings(item, _seen)
        return found

    def guids(self, value: Any) -> set[str]:
        return {match.lower() for text in self.strings(value) for match in GUID.findall(text)}


def _unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any, bool]:
    """A resource body without its `[for ...]` loop and `if (...)` condition wrappers."""
    condition: Any = None
    looped = False
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        looped = looped or "loop_type" in config
        if config.get("condition") is not None:
            condition = config["condition"]
        config = config["config"]
    return config, condition, looped


def templates() -> list[Template]:
    return [Template(path) for path in bicep_files()]


def template(name: str) -> Template:
    return Template(INFRA / name)


def all_resources(type_: str | None = None) -> Iterator[Resource]:
    for each in templates():
        yield from each.resources(type_)
