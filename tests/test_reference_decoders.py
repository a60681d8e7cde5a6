"""The PyPI reference decoders (bench/reference.py) on the real samples in ../shared/data.

These pin what `make bench` compares against: both references must agree with the counts
recorded in each sample's SOURCE.md, and with each other on a small synthetic day, before a
throughput ratio against them means anything. Skips (with the reason) when the shared data
folder beside the repository or a reference package is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow `pytest` without PYTHONPATH=.
    sys.path.insert(0, str(REPO))

from bench import reference as ref  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
FIRST1000 = DATA / "itch50-nasdaq-first1000" / "sample.itch"
HEAD4096 = DATA / "itch50-nasdaq-01302019-head4096" / "sample.itch"

needs_itchbook = pytest.mark.skipif(
    importlib.util.find_spec("itch_book") is None, reason="itch-book not installed: pip install itch-book==0.2.1"
)
needs_itchcpp = pytest.mark.skipif(
    importlib.util.find_spec("itchcpp") is None, reason="itchcpp not installed: pip install itchcpp==1.6.4"
)


def _sample(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared test data not found: {path} (expected the shared/ folder beside the repo)")
    return path


FIRST1000_COUNTS = {"H": 3, "R": 993, "S": 1, "Y": 3}
HEAD4096_COUNTS = {"H": 1, "R": 98, "S": 1, "Y": 1}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("itch") / "synthetic.itch"
    counts = ref.write_synthetic_itch(path, n_messages=20_000, n_symbols=50, block_orders=2_000, seed=7)
    return path, counts


# ------------------------------------------------------------------ real samples


@needs_itchcpp
def test_itchcpp_counts_first1000():
    counts = ref.itchcpp_count(_sample(FIRST1000))
    assert counts == FIRST1000_COUNTS
    assert sum(counts.values()) == 1000


@needs_itchbook
def test_itchbook_counts_first1000():
    path = _sample(FIRST1000)
    assert ref.itchbook_count(path, strict=True) == FIRST1000_COUNTS
    st = ref.itchbook_stats(path, strict=True)
    assert (st["messages"], st["unknown"], st["malformed"], st["pending_bytes"]) == (1000, 0, 0, 0)
    assert (st["adds"], st["crossed_books"], st["last_event"]) == (0, 0, "O")


@needs_itchcpp
def test_itchcpp_truncated_head4096_drops_tail_silently():
    path = _sample(HEAD4096)
    assert ref.itchcpp_count(path) == HEAD4096_COUNTS  # 101 complete, the 15-byte tail is gone
    book = ref.itchcpp_book(path, ["A"])  # the book path does report it, by raising
    assert book["truncated"] and "Incomplete message" in book["error"]


@needs_itchbook
def test_itchbook_truncated_head4096_reports_tail():
    path = _sample(HEAD4096)
    st = ref.itchbook_stats(path)
    assert (st["messages"], st["pending_bytes"]) == (101, 15)
    assert ref.itchbook_count(path) == HEAD4096_COUNTS
    with pytest.raises(ValueError, match=r"truncated \(101 messages decoded, 15 trailing bytes\)"):
        ref.itchbook_stats(path, strict=True)


@needs_itchbook
def test_itchbook_public_feed_raises_on_truncation():
    import datetime as dt

    import itch_book

    feed = itch_book.open(str(_sample(HEAD4096)), date=dt.date(2019, 1, 30))
    with pytest.raises(ValueError, match=r"truncated \(101 messages decoded, 15 trailing bytes\)"):
        for _ in feed.batches(tables=("bbo",)):
            pass


# ------------------------------------------------------------------ synthetic day


@needs_itchcpp
@needs_itchbook
def test_references_agree_on_synthetic_order_flow(synthetic):
    path, written = synthetic
    assert ref.itchcpp_count(path) == written
    assert ref.itchbook_count(path, strict=True) == written
    st = ref.itchbook_stats(path, strict=True)
    assert st["messages"] == sum(written.values())
    assert (st["missing_ref"], st["dup_ref"], st["rejected"], st["crossed_books"]) == (0, 0, 0, 0)
    assert st["adds"] == written["A"] and st["deletes"] == written["D"]
    assert st["live_orders"] > 0  # not drained: final books are non-empty

    symbols = [f"SYM{i:05d}" for i in range(1, 11)]
    ib = ref.itchbook_book(path, symbols, depth=3, strict=True)
    cpp = ref.itchcpp_book(path, symbols)
    assert cpp["error"] is None
    for s in symbols:
        a, b = ib["bbo"][s], cpp["bbo"][s]
        assert (a["bid_px"], a["bid_sz"], a["ask_px"], a["ask_sz"]) == (
            b["bid_px"], b["bid_sz"], b["ask_px"], b["ask_sz"]), s
        if a["bid_px"] is not None and a["ask_px"] is not None:
            assert a["bid_px"] < a["ask_px"]
        levels = ib["depth"][s]
        if levels["bid"]:
            assert levels["bid"][0] == (a["bid_px"], a["bid_sz"], a["bid_ct"])
            assert [p for p, _, _ in levels["bid"]] == sorted((p for p, _, _ in levels["bid"]), reverse=True)


@pytest.mark.parametrize("name", sorted(ref.REFERENCES))
def test_time_reference_smoke(synthetic, name):
    module = name.split(".")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed: pip install {ref.PINS[module]}")
    path, written = synthetic
    n, seconds = ref.time_reference(name, path, repeat=1)
    assert n == sum(written.values())
    assert seconds > 0


def test_missing_package_names_the_pinned_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "itch_book", None)  # makes `import itch_book` fail
    monkeypatch.setitem(sys.modules, "itchcpp", None)
    with pytest.raises(RuntimeError, match=r"pip install itch-book==0\.2\.1"):
        ref.itchbook_stats(b"")
    with pytest.raises(RuntimeError, match=r"pip install itchcpp==1\.6\.4"):
        ref.itchcpp_count(b"")
    assert ref.available() == {"itch_book": False, "itchcpp": False}
