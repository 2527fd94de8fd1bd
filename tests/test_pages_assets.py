"""Static files: vendored bytes as recorded, versioned URLs cached for a year, nothing external."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from jonot_local.paths import displays_dir, web_dir

VENDORED = {
    "static/vendor/htmx-2.0.11.min.js":
        "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
    "static/vendor/htmx-ext-sse-2.2.4.min.js":
        "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136",
    "static/fonts/atkinson-hyperlegible-latin-400-normal.woff2":
        "d64ba838ef5472bba248620ec4fd8b5aa7cf0db2908e0bb230600caf279ba7bc",
    "static/fonts/atkinson-hyperlegible-latin-700-normal.woff2":
        "140e2bd25a7315c8a062508391426b0d8c3297400c947b8d847be28f73a199f0",
    "static/fonts/atkinson-hyperlegible-latin-ext-400-normal.woff2":
        "61eeb0eb8b881a84d069e67be1723f5b353b0b9b866ad8e7ad9dba66cdc4dabd",
    "static/fonts/atkinson-hyperlegible-latin-ext-700-normal.woff2":
        "840ced16f975d8abc2594b436d0206649e0c2a7327e36750ff849d3d37c3c02e",
}


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_vendored_file_is_the_recorded_one(name):
    digest = hashlib.sha256((web_dir() / name).read_bytes()).hexdigest()
    assert digest == VENDORED[name]
    assert VENDORED[name] in (web_dir() / "VENDORED.md").read_text()


def test_font_licence_is_shipped():
    text = (web_dir() / "static/fonts/OFL-atkinson-hyperlegible.txt").read_text()
    assert "SIL Open Font License" in text


def test_chime_is_remade_byte_for_byte(tmp_path):
    import runpy

    tool = runpy.run_path(str(displays_dir() / "tools" / "make_chime.py"))
    tool["write"](tmp_path / "chime.wav")
    shipped = (displays_dir() / "static/chime.wav").read_bytes()
    assert (tmp_path / "chime.wav").read_bytes() == shipped


def _texts() -> list[Path]:
    roots = [web_dir() / "templates", web_dir() / "static", displays_dir() / "templates",
             displays_dir() / "static"]
    return [p for root in roots for p in root.rglob("*")
            if p.suffix in (".html", ".js", ".css", ".svg") and p.is_file()]


def test_no_template_or_static_file_points_outside_the_server():
    assert _texts()
    pattern = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.I)
    offenders = [str(p) for p in _texts() if pattern.search(p.read_text(errors="replace"))]
    assert offenders == []


def test_versioned_static_urls_are_cached_for_a_year(client):
    page = client.get("/display").get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="(/(?:static|assets)/[^"]+\?v=[0-9a-f]+)"', page)
    urls += re.findall(r'url\("(/static/[^"]+\?v=[0-9a-f]+)"\)', page)
    assert any(u.endswith(".js") or ".js?" in u for u in urls) and len(urls) >= 5
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", url


def test_unversioned_or_stale_static_urls_revalidate(client):
    for url in ("/static/pages/ticket.js", "/static/pages/ticket.js?v=0000",
                "/assets/display/chime.wav"):
        r = client.get(url)
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "no-cache"
    assert client.get("/static/../../pyproject.toml?v=1").status_code == 404
