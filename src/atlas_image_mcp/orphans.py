"""What Atlas knows of a paid call that a dead replica left open (the store's sweeper asks here).

The store's sweeper (:mod:`atlas_image_mcp.store.sweeper`) adopts the calls a dead server process
left open and asks :func:`find_at_atlas` about each, with an Atlas client for the call's key:

* a call whose prediction id was recorded: ``GET /model/prediction/{id}``. Finished: ``done`` at
  its charge (a failed job: 0); still running: ``running``; unknown to Atlas: ``unknown`` (a job
  Atlas accepted is never taken for one that was not sent; it keeps counting at what it holds);
* a call whose process died between the POST and recording the id: the account's recent jobs of
  the call's model (``GET /model/history``), matched by the fingerprint of the exact body sent
  (:func:`atlas_image_mcp.prepared.body_fingerprint`). Found: as above. Not found, among every job
  created since shortly before the call started (the listing reaches past that moment, and every
  body in it could be read): ``not_sent``, the POST never left. Anything less certain: ``unknown``,
  asked again next round (the call keeps counting at its hold, never under-counted).
"""

from __future__ import annotations

from .client import AtlasClient
from .errors import NotFoundError
from .ledger import micros
from .models import Prediction, parse_usd
from .prepared import body_fingerprint
from .store import Finding, OpenCall

__all__ = ["find_at_atlas"]

#: How far before a call's start (seconds) its job may appear in Atlas' history (clocks differ).
CLOCK_SKEW_SECONDS = 120.0
#: History pages read per call at most (50 jobs each), newest first.
HISTORY_PAGES = 4
_PAGE = 50


async def find_at_atlas(api: AtlasClient, call: OpenCall) -> Finding:
    """What Atlas says about ``call`` (see the module docstring); raises what the client raises."""
    if call.prediction_id:
        try:
            prediction = await api.get_prediction(call.prediction_id)
        except NotFoundError:
            return Finding("unknown")
        return _finding(prediction)
    if not call.body_sha256:
        return Finding("unknown")
    since = call.started_ms / 1000 - CLOCK_SKEW_SECONDS
    unsure = False
    for page in range(1, HISTORY_PAGES + 1):
        items, total = await api.history(call.model, page=page, size=_PAGE)
        for item in items:
            if item.created_at is not None and item.created_at < since:
                return Finding("unknown") if unsure else Finding("not_sent")
            if item.request_body is None:
                unsure = True
                continue
            if body_fingerprint(item.request_body) == call.body_sha256:
                return _finding(item.prediction)
        if len(items) < _PAGE or (total is not None and page * _PAGE >= total):
            return Finding("unknown") if unsure else Finding("not_sent")  # the whole history was read
    return Finding("unknown")  # busier than the pages read: not sure


def _finding(prediction: Prediction) -> Finding:
    if prediction.kind == "running":
        return Finding("running", prediction.id)
    if prediction.kind == "failed":
        return Finding("done", prediction.id, 0)
    charged = parse_usd(prediction.price)
    return Finding("done", prediction.id, micros(charged) if charged is not None else None)
