"""Context plugin: the visitor's device class from the User-Agent header (ua-parser, the uap-core rules).

Adds ``{"device": {"class": "mobile"}}``: one of ``mobile``, ``tablet``, ``desktop``, ``tv``,
``bot``. A User-Agent that names no browser, OS or device (an SDK or HTTP library calling from a
server, curl) adds nothing: it says nothing about the visitor. Browsers calling the API directly
(CORS) send their own; a server calling on a visitor's behalf can forward the visitor's
User-Agent header. Parsing costs up to milliseconds, so results are cached per User-Agent string.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ua_parser

from personalize.enrichment import RankContext
from personalize.hookspecs import hookimpl

#: Longest User-Agent parsed; longer ones are cut (the uap-core rules match at the start).
MAX_USER_AGENT = 512
_MOBILE_OS = ("iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS", "HarmonyOS")
_DESKTOP_OS = ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian", "FreeBSD", "OpenBSD", "macOS")
_TV_WORDS = ("smart-tv", "smarttv", "googletv", "appletv", "android tv", "hbbtv", "tizen", "webos", "roku", "crkey")


@lru_cache(maxsize=4096)
def device_class(user_agent: str) -> str | None:
    """mobile, tablet, desktop, tv, bot, or None when the User-Agent describes no visitor's device."""
    parsed = ua_parser.parse(user_agent[:MAX_USER_AGENT])
    device = parsed.device.family if parsed.device else None
    os = parsed.os.family if parsed.os else None
    browser = parsed.user_agent.family if parsed.user_agent else None
    lowered = user_agent.lower()
    if device == "Spider":
        return "bot"
    if any(word in lowered for word in _TV_WORDS) or (device or "").lower().endswith("tv"):
        return "tv"
    brand = parsed.device.brand if parsed.device else None
    if device == "iPad" or (brand or "").endswith("Tablet") or "tablet" in lowered or (os == "Android" and "mobile" not in lowered):
        return "tablet"
    if os in _MOBILE_OS or "mobile" in lowered:
        return "mobile"
    if os in _DESKTOP_OS and browser not in (None, "Other"):
        return "desktop"
    return None


@hookimpl
def enrich_context(context: RankContext) -> dict[str, Any] | None:
    user_agent = context.user_agent
    kind = device_class(user_agent) if user_agent else None
    return {"device": {"class": kind}} if kind else None
