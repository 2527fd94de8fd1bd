"""Languages: the Finnish catalogue is complete, and Finnish pages carry no English from it."""

from __future__ import annotations

import json
import re

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from jonot_local.domain import queues, tickets
from jonot_local.i18n import TRANSLATIONS_DIR, available_languages

PO = TRANSLATIONS_DIR / "fi" / "LC_MESSAGES" / "messages.po"


def _english_fragments() -> list[str]:
    """Literal pieces of every English msgid whose Finnish differs (placeholders cut out)."""
    with PO.open("rb") as f:
        catalog = read_po(f, locale="fi")
    pieces = set()
    for msg in catalog:
        if not msg.id:
            continue
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        for english in ids:
            if english in strings:
                continue
            for part in re.split(r"%\([a-z_]+\)[sd]", english):
                part = part.strip(" ,.:—▶")
                if len(part) >= 4 and re.search(r"[A-Za-z]{3}", part):
                    pieces.add(part)
    return sorted(pieces)


def test_every_message_has_a_finnish_translation():
    with PO.open("rb") as f:
        catalog = read_po(f, locale="fi")
    missing = [m.id for m in catalog if m.id and (not m.string or (
        isinstance(m.string, tuple) and not all(m.string)))]
    assert missing == []
    assert not [m.id for m in catalog if m.fuzzy and m.id]


def _flat(value):
    return tuple(value) if isinstance(value, list | tuple) else value


def test_compiled_catalogue_matches_the_po():
    with PO.open("rb") as f:
        po = {_flat(m.id): _flat(m.string) for m in read_po(f, locale="fi") if m.id}
    with PO.with_suffix(".mo").open("rb") as f:
        mo = {_flat(m.id): _flat(m.string) for m in read_mo(f) if m.id}
    assert mo == po, "run: pybabel compile -d jonot_local/translations"
    assert available_languages() == ["en", "fi"]


def test_catalogue_covers_every_string_in_the_pages(tmp_path):
    from babel.messages.extract import extract_from_dir

    from jonot_local.paths import web_dir

    root = web_dir().parent
    with (root / "babel.cfg").open() as f:
        from babel.messages.frontend import parse_mapping_cfg

        method_map, options_map = parse_mapping_cfg(f)
    found = {m[2] if isinstance(m[2], str) else m[2][0]
             for m in extract_from_dir(str(root), method_map, options_map)}
    with PO.open("rb") as f:
        known = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert found and found <= known, sorted(found - known)


def _visible(html: str) -> str:
    """The page's text as a reader meets it: visible text plus the script's strings."""
    texts = []
    config = re.search(r'id="jonot-config">(.*?)</script>', html, re.S)
    if config:
        data = json.loads(config.group(1))["texts"]

        def walk(v):
            if isinstance(v, dict):
                for x in v.values():
                    walk(x)
            elif isinstance(v, str):
                texts.append(v)
        walk(data)
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    attrs = re.findall(r'(?:aria-label|title|alt)="([^"]*)"', body)
    body = re.sub(r"<[^>]+>", " ", body)
    return " ".join([body, *attrs, *texts])


@pytest.fixture
def finnish_pages(client, store, office):
    with store.write() as tx:
        first = tickets.join(tx, office["a"].id, source="kiosk")
        second = tickets.join(tx, office["a"].id, source="kiosk")
        third = tickets.join(tx, office["a"].id, source="kiosk")
        gone = tickets.join(tx, office["lab"].id, source="kiosk")
        tickets.call_next(tx, office["room1"].id)
        tickets.cancel(tx, gone.id, by="customer")
        queues.update_queue(tx, office["lab"].id, is_open=False)
    fi = {"Accept-Language": "fi"}
    return {name: client.get(path, headers=fi).get_data(as_text=True) for name, path in {
        "display": "/display", "called": f"/t/{first.hash}", "next": f"/t/{second.hash}",
        "waiting": f"/t/{third.hash}", "canceled": f"/t/{gone.hash}",
        "unknown": "/t/" + "z" * 22}.items()}


def test_finnish_pages_have_no_english(finnish_pages):
    english = _english_fragments()
    assert "Now serving" in english and "It's your turn" in english
    for name, html in finnish_pages.items():
        assert 'lang="fi"' in html, name
        text = _visible(html)
        leaks = [e for e in english if e in text]
        assert leaks == [], (name, leaks)
