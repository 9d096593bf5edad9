"""``tormentor-engine load``: drive one broker with many logical clients and measure it.

One run, on this machine (127.0.0.1 only)::

    nats-server (embedded, limits sized for the clients) + auth callout   [this process]
    generator processes (spawned), each hosting clients/processes logical clients
      connect   every connection (own: one per client; shared: a few per generator)
      join      broker started (this process), one model curated; Join + Solve each
      rounds    --rounds times, alternating, each slice --duration/--rounds seconds:
        echo    the transport ceiling: the same connections and client code against a
                responder that answers every request with one precomputed Work reply
        steady  the broker: closed loop of updates, validation rounds on
    status (curator) -> exact accounting of every update; everything stopped

The echo and the broker take turns on the client subject (only one answers at a time);
alternating short slices gives both the same background load on a shared machine.

The broker runs in this process and the load in the generators, so the broker's CPU and
memory are this process's (``psutil``), measured apart from nats-server's and the
generators'. What the run writes in ``--out``::

    summary.json   the numbers (keys listed in :func:`summarise`)
    timeline.csv   per second of every echo and steady slice: updates/s, RSS, CPU
    latency.csv    round-trip percentiles per phase (echo, join, steady)
    load.png       updates/s over time (broker vs echo), latency percentiles, memory

State per client: the broker process's RSS before the joins and after them, divided by
the clients admitted; and, independent of allocator noise, the Python heap the broker
keeps per client (``tracemalloc`` around admitting clients into a bare broker and one
update each), and that heap's growth over further rounds of updates (flat: bounded).

Machine caps: the open-file limit is raised to its hard limit here and in every
generator (nats-server inherits it). A run with own connections that needs more file
descriptors, local ports or memory than the machine has is not started: summary.json
says which cap and the command exits with status 2; ``--connections shared`` reaches the
same number of logical clients on a few connections.
"""

from __future__ import annotations

from .command import register
from .drive import run_load, run_load_async
from .settings import LoadError, LoadSettings, connection_caps
from .state_cost import traced_broker_growth, traced_state_bytes_per_client

__all__ = [
    "traced_broker_growth",
    "LoadError",
    "LoadSettings",
    "connection_caps",
    "register",
    "run_load",
    "run_load_async",
    "traced_state_bytes_per_client",
]
