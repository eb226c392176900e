"""``GET /features``: what rudder-server may ask of this transformer.

rudder-server reads the document at start and every 10 s (``services/transformer/
features_impl.go``): ``routerTransform.<DEST>`` sends that destination's jobs to
``/routerTransform``; ``supportDestTransformCompactedPayloadV1`` makes it send compacted bodies;
and a document with neither ``supportSourceTransformV1`` nor ``upgradedToSourceTransformV2``
makes it panic. With an upstream, its document is kept and Klaviyo is added; without one only
what this service serves is advertised.
"""

from __future__ import annotations

from typing import Any, Final

from ..js import JsonObject

DEST_TYPE: Final = "KLAVIYO"
COMPACTED_FLAG: Final = "supportDestTransformCompactedPayloadV1"


def own_features() -> JsonObject:
    return {
        "routerTransform": {DEST_TYPE: True},
        # Sources are not served here; the flags only keep rudder-server from panicking.
        "supportSourceTransformV1": True,
        "upgradedToSourceTransformV2": True,
        "regulations": [],
        COMPACTED_FLAG: True,
    }


def merged_features(upstream: Any) -> JsonObject:
    """The upstream's document with Klaviyo routed here, or ours alone without one."""
    if not isinstance(upstream, dict):
        return own_features()
    document: JsonObject = dict(upstream)
    routed = upstream.get("routerTransform")
    document["routerTransform"] = {**(routed if isinstance(routed, dict) else {}), DEST_TYPE: True}
    # Compaction is one switch for every destination: on only when the upstream reads it too.
    document[COMPACTED_FLAG] = upstream.get(COMPACTED_FLAG) is True
    return document
