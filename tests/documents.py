"""Reading a run's documents in tests of plans that monitor signals."""

from __future__ import annotations

from typing import Any

Docs = list[tuple[str, dict[str, Any]]]


def stop_doc(docs: Docs) -> dict[str, Any]:
    """The run's one stop document; after it may come only events of monitor streams.

    bluesky emits a monitor's event on the thread of the signal's callback: one that was
    already being built when the run unsubscribed can be emitted after the stop document
    (seen in CI). Anything else after the stop is an error, and so is a second stop.
    """
    names = [name for name, _ in docs]
    assert names.count("stop") == 1, names
    at = names.index("stop")
    streams = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    late = [(name, streams.get(doc.get("descriptor"))) for name, doc in docs[at + 1:]]
    assert all(name == "event" and str(stream).endswith("_monitor") for name, stream in late), late
    return docs[at][1]
