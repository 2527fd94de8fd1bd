"""Request bodies, each declared once: the checks and the JSON Schema both come from it.

A body is a class whose attributes are fields::

    class TransferRequest(ActionRequest):
        queue_id = text(required=True)
        to_front = boolean()

``TransferRequest.parse(data)`` checks a decoded JSON object — unknown fields,
missing required ones, the JSON type of each value, null where it is not
allowed, enumerations and integer bounds — and returns the fields that were
sent. ``TransferRequest.schema()`` is the JSON Schema the OpenAPI document
shows. Rules about the content of a value (trimmed lengths, colours, prefixes,
control characters) belong to the domain, which enforces them with its own
messages; a field shows them in its schema with ``doc=``.

Nothing here knows of HTTP: a bad body raises the domain's ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .domain.errors import ValidationError

Check = Callable[[Any], str | None]

VERSION_HELP = "The version you saw; a stale one is refused (409 version_conflict)"


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null: ``type: [x, "null"]`` for simple types, ``anyOf`` for refs."""
    if "$ref" in schema or "anyOf" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


@dataclass(frozen=True)
class Field:
    """One field of a body: how to check a value, and its schema.

    ``check`` answers ``None`` when a (non-null) value fits, else the message.
    ``nullable``: null is accepted (it means "not given", or "clear" in edits).
    ``required``: the field must be present (with ``nullable``, null counts).
    """

    schema: Mapping[str, Any]
    check: Check
    required: bool = False
    nullable: bool = True
    missing: str = "is required"

    def problem(self, value: Any) -> str | None:
        """The message for a present value, or ``None`` when it is accepted."""
        if value is None:
            if self.nullable:
                return None
            if self.required:
                return self.missing
        return self.check(value)

    def json_schema(self) -> dict[str, Any]:
        schema = dict(self.schema)
        return nullable(schema) if self.nullable else schema


class Body:
    """Base of the request bodies; subclasses declare ``Field`` attributes (inherited too).

    ``fields`` maps each name to its ``Field``: the class's own first, in order.
    """

    fields: ClassVar[dict[str, Field]] = {}
    _required: ClassVar[tuple[str, ...]] = ()  # the names of the required fields

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Field] = {}
        for klass in cls.__mro__:  # the class's own fields first, then inherited ones
            for name, value in vars(klass).items():
                if isinstance(value, Field) and name not in found:
                    found[name] = value
        cls.fields = found
        cls._required = tuple(name for name, f in found.items() if f.required)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of ``data`` (a JSON object), checked. Raises ``ValidationError``.

        Unknown fields are refused first, all named; then every bad field is
        listed, in declaration order. The answer holds only the fields sent.
        """
        unknown = sorted(data.keys() - cls.fields.keys()) if data else []
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.",
                                  [{"field": k, "message": "is not a known field"}
                                   for k in unknown])
        if not data and not cls._required:  # an empty body of optional fields: nothing to check
            return {}
        errors = []
        for name, field in cls.fields.items():
            if name not in data:
                if field.required:
                    errors.append({"field": name, "message": field.missing})
                continue
            message = field.problem(data[name])
            if message is not None:
                errors.append({"field": name, "message": message})
        if errors:
            raise ValidationError(
                "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
        return dict(data)

    @classmethod
    def required_fields(cls) -> list[str]:
        return [name for name, f in cls.fields.items() if f.required]

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The JSON Schema of the body: a closed object (unknown fields are refused)."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: f.json_schema() for name, f in cls.fields.items()},
        }
        if cls.required_fields():
            schema["required"] = cls.required_fields()
        schema["additionalProperties"] = False
        description = " ".join((cls.__doc__ or "").split())
        if description:
            schema["description"] = description
        return schema


# -- field kinds ----------------------------------------------------------------------

def _schema(base: dict[str, Any], description: str | None,
            doc: Mapping[str, Any] | None) -> dict[str, Any]:
    schema = {**base, **(doc or {})}
    if description:
        schema["description"] = description
    return schema


def text(*, required: bool = False, nullable: bool | None = None,
         enum: Iterable[str] | None = None, description: str | None = None,
         doc: Mapping[str, Any] | None = None, missing: str = "is required") -> Field:
    """A string, optionally one of ``enum``. Required fields refuse null unless told."""
    choices = tuple(enum) if enum is not None else None

    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if choices is not None and value not in choices:
            return f"must be one of {', '.join(choices)}"
        return None

    base: dict[str, Any] = {"type": "string"}
    if choices is not None:
        base["enum"] = list(choices)
    return Field(_schema(base, description, doc), check, required=required,
                 nullable=(not required) if nullable is None else nullable, missing=missing)


def integer(*, required: bool = False, minimum: int | None = None,
            maximum: int | None = None, description: str | None = None) -> Field:
    """A whole number (``true``/``false`` are not numbers here), within bounds if given."""

    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            return f"must be between {minimum} and {maximum}"
        return None

    base: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        base["minimum"] = minimum
    if maximum is not None:
        base["maximum"] = maximum
    return Field(_schema(base, description, None), check, required=required,
                 nullable=not required)


def boolean(*, description: str | None = None) -> Field:
    """``true`` or ``false`` (or null: not given)."""

    def check(value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"

    return Field(_schema({"type": "boolean"}, description, None), check)


def id_list(*, required: bool = False, min_items: int | None = None,
            description: str | None = None) -> Field:
    """A list of ids (strings); the domain checks that they exist."""

    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return "must be a list"
        if not all(isinstance(v, str) for v in value):
            return "must be a list of ids (strings)"
        return None

    base: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    if min_items is not None:
        base["minItems"] = min_items
    return Field(_schema(base, description, None), check, required=required,
                 nullable=not required)


def listing(items: Mapping[str, Any], *, max_items: int, description: str | None = None,
            nullable: bool = True) -> Field:
    """A list (null: not given, or clear in edits); the domain checks the count and items."""

    def check(value: Any) -> str | None:
        return None if isinstance(value, list) else "must be a list"

    base = {"type": "array", "items": dict(items), "maxItems": max_items}
    return Field(_schema(base, description, None), check, nullable=nullable)


def choice(schema: Mapping[str, Any], accepts: Callable[[Any], bool], message: str, *,
           nullable: bool = True) -> Field:
    """A value of a shape of its own: ``accepts`` says yes or no, ``message`` why not."""
    return Field(dict(schema), lambda v: None if accepts(v) else message, nullable=nullable)


# -- the bodies of the ticket actions (the other bodies live beside their endpoints) --------

class ActionRequest(Body):
    # Every ticket action takes the version the caller saw, against acting on a stale view.
    version = integer(description=VERSION_HELP)


class CallRequest(ActionRequest):
    desk_id = text(required=True)


class TransferRequest(ActionRequest):
    queue_id = text(required=True)
    to_front = boolean()


class ReorderRequest(ActionRequest):
    after = text(required=True, nullable=True,
                 missing="is required (a ticket id, or null for the front)",
                 description="A waiting ticket of the same queue to place this one after; "
                             "null: the front")


class Empty(Body):
    """No fields"""
