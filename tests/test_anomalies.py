"""The registry of anomaly names: every anomaly has a registered name, a stable text and order."""

from __future__ import annotations

import pytest

from tlsinspect.anomalies import NAMES, Anomaly, ordered


def test_an_unregistered_name_is_refused():
    with pytest.raises(ValueError, match="not a registered anomaly name"):
        Anomaly("lost_stream", "client", "x")


@pytest.mark.parametrize(
    "anomaly, text",
    [
        (
            Anomaly("stream_lost", "server", "12 bytes missing"),
            "server's stream lost: 12 bytes missing",
        ),
        (
            Anomaly("malformed_message", "client", "length 3 > 2", "client_hello"),
            "client client_hello: length 3 > 2",
        ),
        (Anomaly("keys_missing", "client", "no secret"), "client: no secret"),
        (
            Anomaly("message_too_large", "client", "claims 16,777,215 bytes", "client_hello"),
            "client client_hello: claims 16,777,215 bytes",
        ),
        (
            Anomaly("flow_evicted", "capture", "8,000 connections followed at once reached"),
            "evicted: 8,000 connections followed at once reached",
        ),
        (
            Anomaly("time_not_a_date", "capture", "first packet 1 ns"),
            "packet time not a date: first packet 1 ns",
        ),
    ],
)
def test_text_of_each_name(anomaly, text):
    assert str(anomaly) == text


def test_output_order_is_the_registry_order_then_the_order_found():
    found = [
        Anomaly("keys_missing", "client", "a"),
        Anomaly("malformed_message", "server", "b", "certificate"),
        Anomaly("stream_lost", "server", "c"),
        Anomaly("malformed_message", "client", "d", "finished"),
    ]
    got = ordered(found)
    assert [a.name for a in got] == [
        "stream_lost",
        "malformed_message",
        "malformed_message",
        "keys_missing",
    ]
    assert [a.detail for a in got if a.name == "malformed_message"] == ["b", "d"]
    assert list(NAMES) == [
        "stream_lost",
        "malformed_message",
        "message_too_large",
        "keys_missing",
        "flow_evicted",
        "time_not_a_date",
    ]
