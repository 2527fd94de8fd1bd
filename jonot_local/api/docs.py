"""``GET /api/v1/docs``: the OpenAPI document as a page people can read, offline.

Server-rendered from the same document as ``/api/v1/openapi.json`` (one
source), with inline CSS and nothing loaded from anywhere. It is a page for
people, not an operation of the JSON API, so the document leaves it out.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Response, render_template

from . import blueprint
from .openapi import build_document

METHODS = ("get", "post", "put", "patch", "delete")
_CONSTRAINTS = (("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
                ("minimum", "≥ {}"), ("maximum", "≤ {}"), ("minItems", "at least {} items"),
                ("maxItems", "at most {} items"), ("pattern", "matches {}"),
                ("uniqueItems", "no repeats"), ("default", "default {}"))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def type_text(schema: dict[str, Any]) -> str:
    """A short human reading of a JSON Schema: ``string or null``, ``list of Label`` …"""
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    if "anyOf" in schema:
        return " or ".join(type_text(s) for s in schema["anyOf"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else str(v).lower()
                                     if isinstance(v, bool) else str(v)
                                     for v in schema["enum"])
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    words = []
    for k in kinds:
        if k == "array":
            words.append("list of " + type_text(schema.get("items", {})))
        elif k == "object" and "properties" in schema:
            words.append("object {" + ", ".join(schema["properties"]) + "}")
        else:
            words.append("true/false" if k == "boolean" else str(k))
    text = " or ".join(words)
    if schema.get("format"):
        text += f" ({schema['format']})"
    return text


def constraints_text(schema: dict[str, Any]) -> str:
    """The bounds a schema states, in words (``at most 120 characters``)."""
    parts = []
    for variant in [schema, *schema.get("anyOf", [])]:
        for key, words in _CONSTRAINTS:
            if key in variant and not (key == "uniqueItems" and not variant[key]):
                parts.append(words.format(variant[key]))
    return "; ".join(dict.fromkeys(parts))


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    return [{"name": name, "type": type_text(prop), "required": name in required,
             "constraints": constraints_text(prop), "description": prop.get("description", "")}
            for name, prop in schema.get("properties", {}).items()]


def _schema_name(content: dict[str, Any]) -> tuple[str, str]:
    """(media type, schema name or type) of the first media type of a content map."""
    media, spec = next(iter(content.items()))
    schema = spec.get("schema", {})
    return media, type_text(schema)


@functools.cache
def reference() -> dict[str, Any]:
    """What the page shows: operations by tag, then the named schemas."""
    doc = build_document()
    schemas = doc["components"]["schemas"]
    shared = doc["components"]["responses"]
    tags: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in doc.get("tags", [])}
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            body = None
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                media, name = _schema_name(content)
                schema = schemas.get(name, {})
                body = {"media": media, "name": name, "required": op["requestBody"]["required"],
                        "fields": _fields(schema), "description": schema.get("description", "")}
            responses = []
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    resp = shared[_ref_name(resp["$ref"])]
                media, name = _schema_name(resp["content"]) if "content" in resp else ("", "")
                responses.append({"status": status, "description": resp["description"],
                                  "media": media, "schema": name, "linked": name in schemas,
                                  "headers": list(resp.get("headers", {}))})
            tags.setdefault(op["tags"][0], []).append({
                "id": op["operationId"], "method": method.upper(), "path": path,
                "role": op["x-jonot-role"], "summary": op["summary"],
                "params": [{"name": p["name"], "in": p["in"], "required": p.get("required"),
                            "type": type_text(p["schema"]),
                            "constraints": constraints_text(p["schema"]),
                            "description": p.get("description", "")} for p in params],
                "body": body, "responses": responses,
            })
    named = [{"name": name, "description": s.get("description", ""), "fields": _fields(s)}
             for name, s in schemas.items() if "properties" in s]
    return {"info": doc["info"], "tags": [(t, ops) for t, ops in tags.items() if ops],
            "schemas": named}


@blueprint.get("/docs")
def api_docs() -> Response:
    """The API reference as HTML, rendered from the OpenAPI document."""
    html = render_template("api/docs.html", **reference())
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
    return resp
