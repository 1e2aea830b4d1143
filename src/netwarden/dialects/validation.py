"""Turn schema and conversion errors into located diagnostics.

Every dialect validates its input once, here, with a pydantic model of the format; the error's
field path is mapped back to the line where the field was written.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from netwarden.dialects.source import Document, FieldPath
from netwarden.errors import InputError

M = TypeVar("M", bound=BaseModel)


class Schema(BaseModel):
    """Base for format schemas: camelCase fields, unknown fields ignored, no type coercion
    (the API server would reject `port: "80"` as a number, so do we)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", strict=True, frozen=True
    )


def describe_path(field_path: FieldPath) -> str:
    """`("spec", "ingress", 0, "ports")` -> `spec.ingress[0].ports`."""
    text = ""
    for key in field_path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def _clean_path(loc: tuple[Any, ...]) -> list[str | int]:
    """Drop pydantic's own steps (union member names, validator names) from an error path."""
    return [
        key
        for key in loc
        if isinstance(key, int) or not (key in ("int", "str", "bool") or "[" in key or "-" in key)
    ]


def parse(document: Document, schema: type[M], field_path: FieldPath = ()) -> M:
    """Validate the document (or the part at `field_path`) against `schema`."""
    data: Any = document.data
    for key in field_path:
        data = data[key]
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        # For a union (port: number | name) the error of the branch the value was meant for is
        # the one with a reason (a value error), not "should be a valid integer".
        first = next((e for e in errors if e["type"] == "value_error"), errors[0])
        path = [*field_path, *_clean_path(first["loc"])]
        message = first["msg"]
        if first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        fail(document, path, message)


def fail(document: Document, field_path: FieldPath, message: str) -> NoReturn:
    """Raise an InputError located at `field_path`, naming the resource and the field."""
    raise InputError(
        document.location(field_path),
        message,
        f"{resource_name(document)}: {describe_path(field_path)}",
    )


def resource_name(document: Document) -> str:
    """`NetworkPolicy shop/allow-web`, or as much of it as the document has."""
    data = document.data if isinstance(document.data, dict) else {}
    kind = data.get("kind") or "resource"
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if not name:
        return str(kind)
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
