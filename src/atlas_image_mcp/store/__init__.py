"""The store: budgets, usage and the state that replicas share, on SQLite or PostgreSQL.

One process opens it once (:func:`open_store`) at the place the settings name
(:func:`location_of`) and uses its parts, keyed by opaque names the server gives:

* :attr:`Store.spend` (:mod:`.spend`): reservations before a POST, their prediction ids, charges,
  limits per bucket, usage;
* :attr:`Store.pictures` (:mod:`.pictures`): each owner's picture history;
* :attr:`Store.keys` (:mod:`.keys`): linked Atlas keys, sealed;
* :attr:`Store.tasks` (:mod:`.taskstate`): task state that does not fit in a task id;
* :attr:`Store.sessions` (:mod:`.sessions`): sessions per owner across replicas (admission);
* :attr:`Store.replicas` (:mod:`.replicas`) and :meth:`Store.watch` (:mod:`.sweeper`): heartbeats,
  and the calls of replicas that died, settled by asking Atlas;
* :meth:`Store.ready`: up or down, for ``/readyz``. While the store is down every use raises
  :class:`~atlas_image_mcp.errors.StoreUnavailableError` at once; it recovers by itself.

Importing this package opens nothing and imports no database driver.
"""

from __future__ import annotations

from .database import StoreStatus
from .keys import LinkedKey
from .location import Location, locate, location_of
from .options import PoolOptions, StoreOptions, SweepOptions
from .pictures import PictureRecord
from .service import Store, open_store
from .spend import Ask, CallUsage, DayModelUsage, Hold, Job, Limits, Refusal, UsageReport
from .sweeper import Finding, Lookup, OpenCall, SweepReport

__all__ = [
    "Ask",
    "CallUsage",
    "DayModelUsage",
    "Finding",
    "Hold",
    "Job",
    "Limits",
    "LinkedKey",
    "Location",
    "Lookup",
    "OpenCall",
    "PictureRecord",
    "PoolOptions",
    "Refusal",
    "Store",
    "StoreOptions",
    "StoreStatus",
    "SweepOptions",
    "SweepReport",
    "UsageReport",
    "locate",
    "location_of",
    "open_store",
]
