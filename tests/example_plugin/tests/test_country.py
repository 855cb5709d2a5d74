"""The example context plugin: alone, and through a real Rank once installed."""

from datetime import datetime, timezone

import pytest

from personalize.enrichment import RankContext
from personalize_example import enrich_context


def _context(headers: dict[str, str]) -> RankContext:
    return RankContext(datetime(2026, 1, 2, tzinfo=timezone.utc), headers, [], None)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"CF-IPCountry": "it"}, {"location": {"country": "IT"}}),
    ({"CloudFront-Viewer-Country": "DE"}, {"location": {"country": "DE"}}),
    ({"CF-IPCountry": "XX"}, None),          # Cloudflare: unknown
    ({"CF-IPCountry": "Italy"}, None),       # not an ISO code: nothing rather than junk
    ({}, None),
])
def test_country_from_cdn_headers(headers: dict[str, str], expected: object) -> None:
    assert enrich_context(_context(headers)) == expected


def test_the_installed_plugin_adds_the_country_to_a_logged_rank(tmp_path) -> None:
    from sqlalchemy import select

    from personalize.app import create_app
    from personalize.config import load_settings
    from personalize.models import Event

    app = create_app(load_settings({"data_dir": str(tmp_path), "enrich_context": True}, env={}), start=False)
    try:
        answer = app.test_client().post("/personalizer/v1.0/rank", headers={"CF-IPCountry": "FR"},
                                        json={"actions": [{"id": "a"}, {"id": "b"}], "eventId": "e1"})
        assert answer.status_code == 201, answer.json
        with app.extensions["personalize"].db.read() as session:
            example = session.scalars(select(Event.example)).one()
        assert '"c_location":{"country":"FR"}' in example
    finally:
        app.extensions["personalize"].close()
