"""QuickFIX's FIX 4.4 server acceptance definitions against the venue's acceptor.

One test per ``.def`` in ``../shared/data/quickfix/at-definitions/server/fix44``, each against a
fresh venue acceptor in the acceptance profile (own port, fresh memory store), driven by
``replay/venue/acceptance.py``. Definitions that do not apply to an order-accepting venue are
listed in ``acceptance.NOT_APPLICABLE`` with the reason (none today: all 59 apply and pass).

Two definitions wait on real heartbeat intervals (HeartBtInt=6 in the script: ~13 s and ~36 s of
wall time). They are marked slow, still run, and are started in background threads when the
module starts so they overlap the fast ones; their tests collect the outcome.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from replay.venue import acceptance as A
from tests.conftest import DATA

DEFS_DIR = DATA / "quickfix" / "at-definitions" / "server" / "fix44"
FIELDS = DATA / "quickfix" / "at-definitions" / "fields.fmt"


def _defs() -> list[Path]:
    if not DEFS_DIR.is_dir():
        return []
    defs = sorted(DEFS_DIR.glob("*.def"))
    return [d for d in defs if d.stem not in A.SLOW] + [d for d in defs if d.stem in A.SLOW]   # slow ones last


def _param(d: Path):
    marks = []
    if d.stem in A.SLOW:
        marks.append(pytest.mark.slow)
    if d.stem in A.NOT_APPLICABLE:
        marks.append(pytest.mark.skip(reason=f"not applicable: {A.NOT_APPLICABLE[d.stem]}"))
    return pytest.param(d, id=d.stem, marks=marks)


DEFS = _defs()


class _Background:
    """A definition run in a thread, so slow scripts overlap the rest of the module."""

    def __init__(self, path: Path, patterns, state_root: Path):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(path, patterns, state_root), daemon=True,
                                       name=f"at-{path.stem}")
        self.thread.start()

    def _run(self, path, patterns, state_root) -> None:
        try:
            A.run_fresh(path, patterns, state_root=str(state_root))
        except BaseException as exc:  # noqa: BLE001 - reported by the test that joins it
            self.error = exc

    def result(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError(f"{self.thread.name} still running after {timeout_s:.0f}s")
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def patterns():
    from tests.conftest import shared_data

    return A.load_patterns(shared_data("quickfix", "at-definitions", "fields.fmt"))


@pytest.fixture(scope="module")
def background(patterns, tmp_path_factory):
    """Start the slow definitions once, at the first test of the module."""
    root = tmp_path_factory.mktemp("at-slow")
    return {d.stem: _Background(d, patterns, root) for d in DEFS
            if d.stem in A.SLOW and d.stem not in A.NOT_APPLICABLE}


def test_definitions_present():
    from tests.conftest import shared_data

    shared_data("quickfix", "at-definitions", "server", "fix44")
    assert len(DEFS) == 59
    assert set(A.NOT_APPLICABLE) <= {d.stem for d in DEFS}


@pytest.mark.parametrize("definition", [_param(d) for d in DEFS] or
                         [pytest.param(None, marks=pytest.mark.skip(reason=f"needs ../shared/data ({DEFS_DIR} not found)"))])
def test_acceptance_definition(definition: Path, patterns, background, tmp_path):
    if definition.stem in background:
        background[definition.stem].result(timeout_s=120)
        return
    A.run_fresh(definition, patterns, state_root=str(tmp_path))


def test_runner_reports_a_mismatch_clearly(patterns, tmp_path):
    """A wrong expectation fails with the line, the reason and both messages."""
    from tests.conftest import shared_data

    src = shared_data("quickfix", "at-definitions", "server", "fix44", "1a_ValidLogonWithCorrectMsgSeqNum.def")
    bad = tmp_path / "broken.def"
    bad.write_text(src.read_text(encoding="latin-1").replace("108=30\x0110=0", "108=31\x0110=0"), encoding="latin-1")
    with pytest.raises(A.DefinitionError, match=r"broken\.def:\d+: value in field \(108\) should be \(31\) but was \(30\)"):
        A.run_fresh(bad, patterns, state_root=str(tmp_path))


def test_fixify_and_compare():
    msg = A.fixify("8=FIX.4.4\x0135=0\x0134=2\x0149=TW44\x0152=20240101-00:00:00\x0156=ISLD\x01")
    assert msg.startswith("8=FIX.4.4\x019=") and msg.endswith("\x01") and "\x0110=" in msg
    body = msg.split("\x019=", 1)[1]
    n = int(body.split("\x01", 1)[0])
    assert len(body.split("\x01", 1)[1].rsplit("10=", 1)[0]) == n
    pats = A.load_patterns(FIELDS if FIELDS.is_file() else None)
    assert A.compare(msg, msg.replace("20240101-00:00:00", "20991231-23:59:59"), pats) is None
    assert "field (56)" in A.compare(msg, msg.replace("56=ISLD", "56=XXXX"), pats)
    assert A.timify("52=<TIME-5>").startswith("52=2")
