"""InProcess skips only WSGI: the same decoder, validation and service code as HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.transport import InProcess, SimClock, TransportError

ACTIONS = [{"id": "a", "features": [{"item": {"kind": "x"}}]}, {"id": "b", "features": [{"item": {"kind": "y"}}]}]


def test_in_process_answers_like_the_http_endpoint(tmp_path: Path) -> None:
    transport = InProcess(tmp_path, {"learn_every": 1}, SimClock())
    try:
        body = {"eventId": "e1", "contextFeatures": [{"user": {"seg": "s"}}], "actions": ACTIONS}
        direct = transport.rank(body)
        over_http = transport.client.post("/personalizer/v1.0/rank", json={**body, "eventId": "e2"}).get_json()
        assert set(direct) == set(over_http) == {"eventId", "rewardActionId", "ranking"}
        assert sorted(e["id"] for e in direct["ranking"]) == ["a", "b"]
        transport.reward("e1", 1.0)
        assert transport.status()["events"]["learned"] == 1
        with pytest.raises(TransportError, match="HTTP 404"):
            transport.reward("nope", 1.0)
        with pytest.raises(TransportError, match="HTTP 400.*InvalidRewardValue"):
            transport.reward("e2", float("nan"))  # rejected like NaN in a JSON body
        with pytest.raises(TransportError, match="HTTP 409"):
            transport.rank(body)  # eventId e1 again
        with pytest.raises(TransportError, match="HTTP 400.*InvalidFeatures"):
            transport.rank({"actions": [{"id": "a", "features": [{"_x": 1}]}]})
    finally:
        transport.close()
