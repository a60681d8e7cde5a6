"""The venue simulator: a QuickFIX acceptor that matches our orders against the replayed book.

- ``matching.py``: the matching engine (FIFO queue position, no market impact), no FIX;
- ``app.py``: the QuickFIX applications (the exchange, and the acceptance-test profile);
- ``journal.py``: the append-only journal that makes ``kill -9`` + restart exact;
- ``process.py``: :class:`VenueProcess`, the launcher used by the run loop and tests;
- ``acceptance.py``: a runner for QuickFIX's acceptance-test ``.def`` scripts.

``python -m replay.venue --capture F --port P --state-dir D --clock C`` runs one: ``C`` the sim
clock file of a bot's replay (lock-step), or ``wall`` (free-running: the market follows wall time
at ``--speed``, and any FIX 4.4 client can trade against it; ``make venue``).
"""

from replay.venue.process import VenueProcess, VenueStartError

__all__ = ["VenueProcess", "VenueStartError"]
