"""The readable API reference at /api/v1/docs, and the README's API section, follow the code.

The page is rendered from the OpenAPI document and must load nothing from
anywhere; the README's error-code table and its request-body examples are
checked against the code that defines them.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from jonot_local.api.desks import DeskCreate
from jonot_local.api.errors import error_codes
from jonot_local.api.openapi import build_document
from jonot_local.api.queues import QueueCreate
from jonot_local.api.tickets import JoinRequest

DOC = build_document()
README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
METHODS = ("get", "post", "put", "patch", "delete")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from jonot_local.app import create_app

    app = create_app({"data_dir": tmp_path_factory.mktemp("docs")})
    resp = app.test_client().get("/api/v1/docs")
    yield resp
    app.extensions["jonot"].store.close()


def test_the_reference_renders_as_html(page):
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert text.startswith("<!doctype html>")
    assert DOC["info"]["title"] in text and DOC["info"]["version"] in text


def test_the_reference_lists_every_operation_of_the_document(page):
    text = page.get_data(as_text=True)
    for path, item in DOC["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            section = text.split(f'id="{op["operationId"]}"', 1)
            assert len(section) == 2, f"{method} {path} is missing"
            body = section[1].split('<section class="op"', 1)[0]
            assert path in body and method.upper() in body
            assert op["x-jonot-role"] in body
            assert _html_text(op["summary"]) in body
            for status in op["responses"]:
                assert f"<code>{status}</code>" in body, (path, method, status)
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                schema = DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]
                for field in schema["properties"]:
                    assert f"<code>{field}</code>" in body, (path, method, field)


def _html_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("'", "&#39;").replace('"', "&#34;")


def test_the_reference_loads_nothing_from_anywhere(page):
    parser = _Tags()
    parser.feed(page.get_data(as_text=True))
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "source",
                       "video", "audio", "base"}
    for tag, attrs in parser.tags:
        assert "src" not in attrs and "srcset" not in attrs, tag
        href = attrs.get("href")
        if href is not None:
            assert href.startswith("#") or re.fullmatch(r"[a-z.]+", href), href
        assert "url(" not in (attrs.get("style") or "")
    assert "url(" not in page.get_data(as_text=True).split("</style>")[0]
    assert "@import" not in page.get_data(as_text=True)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


# -- the README's HTTP API section --------------------------------------------------------

def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_the_readme_error_table_is_the_codes_table():
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", _section("HTTP API"), re.M)
    assert dict((code, int(status)) for code, status in rows) == error_codes()
    assert len(rows) == len(error_codes()), "a code is listed twice"


@pytest.mark.parametrize("label,body", [("join", JoinRequest), ("queue", QueueCreate),
                                        ("desk", DeskCreate)])
def test_the_readme_request_examples_are_accepted(label, body):
    block = re.search(rf"<!-- body:{label} -->\n```json\n(.*?)\n```", _section("HTTP API"),
                      re.S)
    assert block, f"no {label} example in the README"
    example = json.loads(block.group(1))
    assert body.parse(example) == example
    assert set(body.required_fields()) <= set(example)
