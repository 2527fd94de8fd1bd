"""Languages of the pages: Flask-Babel wired to the app, and how a request's locale is chosen.

The locale is, in order: ``?lang=`` in the address, the page's own setting (a
display's language, put in ``g.page_language`` by its view), the browser's
``Accept-Language``, then the ``language`` setting. Only languages with a
catalogue (and English, the source language) are ever chosen.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app, g, request
from flask_babel import Babel, get_locale

from .runtime import runtime

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
SOURCE_LANGUAGE = "en"


def available_languages() -> list[str]:
    """The languages the pages can be shown in: English plus every shipped catalogue."""
    found = sorted(p.parent.parent.name for p in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/*.mo"))
    return [SOURCE_LANGUAGE, *[code for code in found if code != SOURCE_LANGUAGE]]


def known_language(code: str | None) -> str | None:
    """``code`` cut to its language part when the server has it (``fi-FI`` → ``fi``)."""
    if not code:
        return None
    code = code.strip().lower().replace("_", "-").split("-")[0]
    return code if code in available_languages() else None


def select_locale() -> str:
    """The locale of the current request (see the module docstring for the order)."""
    for wanted in (request.args.get("lang"), g.get("page_language")):
        found = known_language(wanted)
        if found:
            return found
    best = request.accept_languages.best_match(available_languages())
    if best:
        return best
    return known_language(_setting_language()) or SOURCE_LANGUAGE


def _setting_language() -> str | None:
    """The ``language`` setting: the office's runtime's, or the cloud app's config."""
    if "jonot" in current_app.extensions:
        return runtime().settings.language
    return current_app.config.get("JONOT_LANGUAGE")


def init_app(app: Flask) -> Babel:
    """Install Flask-Babel on ``app`` with the package's compiled catalogues."""
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", SOURCE_LANGUAGE)
    babel = Babel(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
    return babel
