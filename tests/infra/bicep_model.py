"""The Bicep templates as data, read with pycep (the parser checkov uses; `.venv-infra` only).

pycep returns plain JSON-like data: literals as themselves, references to parameters and variables
as bare strings, function calls as ``{"function": {...}}`` and operators as ``{"operator": {...}}``.
The helpers here resolve variables so the tests can assert intent ("every app setting is set",
"no broad role is granted") without a Bicep compiler, which is not installable here.

pycep is imported lazily through importlib so that mypy in the app's `.venv`, where pycep is
absent, type-checks this package too.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import uuid
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
def _parser() -> Any:
    return importlib.import_module("pycep").BicepParser()  # building its grammar takes a while


@cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep document of one template; raises when pycep cannot parse it."""
    document = _parser().parse(file_path=path)
    if not isinstance(document, dict):
        raise TypeError(f"pycep returned {type(document).__name__} for {path}")
    return document


# A property literally named "function" or "operator" (a metric alert's `operator: 'GreaterThan'`)
# holds a string, not an expression.
def is_call(value: Any, name: str | None = None) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("function"), dict)
        and (name is None or value["function"]["type"] == name)
    )


def is_operator(value: Any, name: str | None = None) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("operator"), dict)
        and (name is None or value["operator"]["type"] == name)
    )


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


# --- a small evaluator of Bicep expressions ------------------------------------------------------
#
# Enough of the template language to compute what a template deploys for given parameter values:
# the names built from the environment name (checked against each resource type's limit) and the
# values main.bicep passes to its modules in each network mode and hosting plan (rendered for
# checkov). Anything else raises Unevaluable, so a test never passes on a value it could not compute.
#
# pycep's grammar binds `!` and `?:` more loosely than Bicep does (`a <= 64 ? b : c` parses as
# `a <= (64 ? b : c)`, `!a && b` as `!(a && b)`); the templates parenthesise such conditions, and
# test_conditions_are_parenthesised keeps it so.

CLOUDS: dict[str, dict[str, Any]] = {
    "AzureCloud": {
        "name": "AzureCloud",
        "suffixes": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"},
    },
    "AzureChinaCloud": {
        "name": "AzureChinaCloud",
        "suffixes": {"storage": "core.chinacloudapi.cn", "keyvaultDns": ".vault.azure.cn"},
    },
    "AzureUSGovernment": {
        "name": "AzureUSGovernment",
        "suffixes": {"storage": "core.usgovcloudapi.net", "keyvaultDns": ".vault.usgovcloudapi.net"},
    },
}
INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")


class Unevaluable(ValueError):
    """The expression uses something the evaluator does not model (a resource's runtime value)."""


def unique_string(*parts: str) -> str:
    """Same length and alphabet as Bicep's uniqueString (13 lower-case letters and digits)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[byte % 32] for byte in digest[:13])


@cache
def parse_expression(text: str) -> Any:
    """One Bicep expression (e.g. the inside of a string interpolation), parsed."""
    document = _parser().parse(text=f"var x = {text}\n")
    return document["variables"]["x"]["value"]


@dataclass
class Evaluator:
    template: Template
    scope: dict[str, Any]  # parameter values (and loop variables)
    cloud: str = "AzureCloud"

    @classmethod
    def for_template(cls, owner: Template, values: dict[str, Any], cloud: str = "AzureCloud") -> Evaluator:
        """Parameters take the given values, else their declared defaults; missing ones stay unknown."""
        scope = {}
        for name, decl in owner.parameters.items():
            if name in values:
                scope[name] = values[name]
            elif decl.get("default") is not None:
                scope[name] = decl["default"]
        scope.update({k: v for k, v in values.items() if k not in scope})
        return cls(owner, scope, cloud)

    def value(self, expression: Any) -> Any:
        if expression is None or isinstance(expression, (bool, int, float)):
            return expression
        if isinstance(expression, str):
            return self._name_or_string(expression)
        if isinstance(expression, list):
            return [self.value(item) for item in expression]
        if isinstance(expression, dict):
            if is_call(expression):
                return self._function(expression["function"])
            if is_operator(expression):
                return self._operator(expression["operator"])
            if "loop_type" in expression:
                raise Unevaluable("for-expression")
            return {key: self.value(item) for key, item in expression.items()}
        raise Unevaluable(repr(expression))

    def _name_or_string(self, text: str) -> Any:
        if text in self.scope:
            return self.scope[text]
        if text in self.template.variables:
            return self.value(self.template.variables[text])
        if text in self.template.parameters:
            raise Unevaluable(f"parameter {text} has no value")
        if text in self.template.document.get("resources", {}) or text in self.template.document.get("modules", {}):
            raise Unevaluable(f"{text} is a resource or module: known at deployment time only")
        return INTERPOLATION.sub(lambda match: str(self._text(self.value(parse_expression(match[1])))), text)

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            raise Unevaluable("object in a string")
        return str(value)

    def _function(self, call: dict[str, Any]) -> Any:
        kind = call["type"]
        raw = call.get("parameters") or {}
        args = [self.value(value) for value in raw.values()] if kind not in ("resource_group", "subscription") else []
        result: Any
        if kind == "environment":
            result = CLOUDS[self.cloud]
        elif kind == "subscription":
            result = {"id": "/subscriptions/00000000-0000-0000-0000-000000000000", "subscriptionId": "0" * 8}
        elif kind == "resource_group":
            result = {"id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg", "name": "rg"}
        elif kind == "take":
            result = args[0][: args[1]]
        elif kind == "to_lower":
            result = args[0].lower()
        elif kind == "to_upper":
            result = args[0].upper()
        elif kind == "length":
            result = len(args[0])
        elif kind == "unique_string":
            result = unique_string(*args)
        elif kind == "guid":  # Bicep's guid() is a name-based UUID of its arguments: same shape here
            result = str(uuid.uuid5(uuid.NAMESPACE_URL, "-".join(map(self._text, args))))
        elif kind == "empty":
            result = not args[0]
        elif kind == "trim":
            result = args[0].strip()
        elif kind == "replace":
            result = args[0].replace(args[1], args[2])
        elif kind == "split":
            result = args[0].split(args[1])
        elif kind == "string":
            result = self._text(args[0])
        elif kind == "concat":
            lists = all(isinstance(a, list) for a in args)
            result = [item for a in args for item in a] if lists else "".join(map(self._text, args))
        elif kind == "format":
            result = re.sub(r"\{(\d+)\}", lambda m: self._text(args[1 + int(m[1])]), args[0])
        else:
            raise Unevaluable(f"function {kind}")
        if "property_name" in call:
            result = result[call["property_name"]]
        if "index" in call:
            result = result[call["index"]]
        return result

    def _operator(self, operator: dict[str, Any]) -> Any:
        kind = operator["type"]
        operands = operator["operands"]
        if kind == "conditional":
            branch = "true_value" if self._bool(operands["condition"]) else "false_value"
            return self.value(operands[branch])
        if kind == "not":
            return not self._bool(operands["bool_value"])
        if kind == "property_accessor":
            owner = self.value(operands["operand_1"])
            key = operands["operand_2"]
            while isinstance(key, dict) and "operator" in key:  # a.b.c parses as a.(b.c)
                inner = key["operator"]["operands"]
                owner = owner[inner["operand_1"]]
                key = inner["operand_2"]
            if not isinstance(owner, dict) or key not in owner:
                raise Unevaluable(f"property {key}")
            return owner[key]
        left = self.value(operands["operand_1"])
        if kind == "and":
            return bool(left) and self._bool(operands["operand_2"])
        if kind == "or":
            return bool(left) or self._bool(operands["operand_2"])
        right = self.value(operands["operand_2"])
        comparisons = {
            "equals": lambda a, b: a == b,
            "not_equals": lambda a, b: a != b,
            "less_than": lambda a, b: a < b,
            "less_than_or_equals": lambda a, b: a <= b,
            "greater_than": lambda a, b: a > b,
            "greater_than_or_equals": lambda a, b: a >= b,
            "substract": lambda a, b: a - b,
            "add": lambda a, b: a + b,
            "index_accessor": lambda a, b: a[b],
        }
        if kind not in comparisons:
            raise Unevaluable(f"operator {kind}")
        return comparisons[kind](left, right)

    def _bool(self, expression: Any) -> bool:
        value = self.value(expression)
        if not isinstance(value, bool):
            raise Unevaluable(f"{expression!r} is not a bool")
        return value


def module_parameters(caller: Evaluator, module: Module) -> dict[str, Any]:
    """The values a module call passes that are known before deployment (others are left out)."""
    known = {}
    for name, expression in module.params.items():
        try:
            known[name] = caller.value(expression)
        except (Unevaluable, KeyError, IndexError, TypeError):
            continue
    return known
