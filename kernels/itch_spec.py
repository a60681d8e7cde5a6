"""Nasdaq TotalView-ITCH 5.0 message layouts (specification revision 2023-04-28).

Pure data, the single description of the wire format: the JSON renderer (`hftbot decode`), the
generator's tests and the spec-vs-kernel property tests read it, and the decode kernel
(`kernels/itch.py`) builds its field table for the one-dimensional columns from it at import
(the aux/alpha slots are written by hand); a property test checks the kernel against this table
field by field.

Each field is ``(name, offset, size, kind, column, slot)``:

- ``kind``: ``"u"`` unsigned big-endian integer, ``"p4"``/``"p8"`` Price(4)/Price(8) fixed point
  (kept as integers), ``"ts"`` 6-byte nanoseconds since midnight, ``"a"`` alpha (ASCII).
- ``column``/``slot``: where the value lands in the event table (`kernels/events.py`). ``slot`` is
  the index inside a 2-D column (``aux`` or ``alpha``) and ``None`` for 1-D columns. Alphas of
  more than one byte in ``alpha`` take ``size`` consecutive slots starting at ``slot``; ``stock``
  and ``mpid`` hold 8 and 4 ASCII bytes packed big-endian into one integer.
"""

from __future__ import annotations

HEADER = (
    ("stock_locate", 1, 2, "u", "locate", None),
    ("tracking_number", 3, 2, "u", "tracking", None),
    ("timestamp", 5, 6, "ts", "ts", None),
)


def _msg(name: str, length: int, *fields: tuple) -> tuple[str, int, tuple]:
    return name, length, HEADER + tuple(fields)


STOCK = ("stock", 11, 8, "a", "stock", None)

MESSAGES: dict[str, tuple[str, int, tuple]] = {
    "S": _msg("system_event", 12, ("event_code", 11, 1, "a", "alpha", 0)),
    "R": _msg(
        "stock_directory", 39, STOCK,
        ("market_category", 19, 1, "a", "alpha", 0),
        ("financial_status_indicator", 20, 1, "a", "alpha", 1),
        ("round_lot_size", 21, 4, "u", "aux", 0),
        ("round_lots_only", 25, 1, "a", "alpha", 2),
        ("issue_classification", 26, 1, "a", "alpha", 3),
        ("issue_sub_type", 27, 2, "a", "alpha", 4),
        ("authenticity", 29, 1, "a", "alpha", 6),
        ("short_sale_threshold_indicator", 30, 1, "a", "alpha", 7),
        ("ipo_flag", 31, 1, "a", "alpha", 8),
        ("luld_reference_price_tier", 32, 1, "a", "alpha", 9),
        ("etp_flag", 33, 1, "a", "alpha", 10),
        ("etp_leverage_factor", 34, 4, "u", "aux", 1),
        ("inverse_indicator", 38, 1, "a", "alpha", 11),
    ),
    "H": _msg(
        "stock_trading_action", 25, STOCK,
        ("trading_state", 19, 1, "a", "alpha", 0),
        ("reserved", 20, 1, "a", "alpha", 1),
        ("reason", 21, 4, "a", "alpha", 2),
    ),
    "Y": _msg("reg_sho_restriction", 20, STOCK, ("reg_sho_action", 19, 1, "a", "alpha", 0)),
    "L": _msg(
        "market_participant_position", 26,
        ("mpid", 11, 4, "a", "mpid", None),
        ("stock", 15, 8, "a", "stock", None),
        ("primary_market_maker", 23, 1, "a", "alpha", 0),
        ("market_maker_mode", 24, 1, "a", "alpha", 1),
        ("market_participant_state", 25, 1, "a", "alpha", 2),
    ),
    "V": _msg(
        "mwcb_decline_level", 35,
        ("level_1", 11, 8, "p8", "aux", 0),
        ("level_2", 19, 8, "p8", "aux", 1),
        ("level_3", 27, 8, "p8", "aux", 2),
    ),
    "W": _msg("mwcb_status", 12, ("breached_level", 11, 1, "a", "alpha", 0)),
    "K": _msg(
        "ipo_quoting_period_update", 28, STOCK,
        ("ipo_quotation_release_time", 19, 4, "u", "aux", 0),
        ("ipo_quotation_release_qualifier", 23, 1, "a", "alpha", 0),
        ("ipo_price", 24, 4, "p4", "price", None),
    ),
    "J": _msg(
        "luld_auction_collar", 35, STOCK,
        ("auction_collar_reference_price", 19, 4, "p4", "price", None),
        ("upper_auction_collar_price", 23, 4, "p4", "aux", 0),
        ("lower_auction_collar_price", 27, 4, "p4", "aux", 1),
        ("auction_collar_extension", 31, 4, "u", "aux", 2),
    ),
    "h": _msg(
        "operational_halt", 21, STOCK,
        ("market_code", 19, 1, "a", "alpha", 0),
        ("operational_halt_action", 20, 1, "a", "alpha", 1),
    ),
    "A": _msg(
        "add_order", 36,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("buy_sell_indicator", 19, 1, "a", "side", None),
        ("shares", 20, 4, "u", "shares", None),
        ("stock", 24, 8, "a", "stock", None),
        ("price", 32, 4, "p4", "price", None),
    ),
    "F": _msg(
        "add_order_mpid", 40,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("buy_sell_indicator", 19, 1, "a", "side", None),
        ("shares", 20, 4, "u", "shares", None),
        ("stock", 24, 8, "a", "stock", None),
        ("price", 32, 4, "p4", "price", None),
        ("attribution", 36, 4, "a", "mpid", None),
    ),
    "E": _msg(
        "order_executed", 31,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("executed_shares", 19, 4, "u", "shares", None),
        ("match_number", 23, 8, "u", "match", None),
    ),
    "C": _msg(
        "order_executed_with_price", 36,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("executed_shares", 19, 4, "u", "shares", None),
        ("match_number", 23, 8, "u", "match", None),
        ("printable", 31, 1, "a", "alpha", 0),
        ("execution_price", 32, 4, "p4", "price", None),
    ),
    "X": _msg(
        "order_cancel", 23,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("cancelled_shares", 19, 4, "u", "shares", None),
    ),
    "D": _msg("order_delete", 19, ("order_reference_number", 11, 8, "u", "ref", None)),
    "U": _msg(
        "order_replace", 35,
        ("original_order_reference_number", 11, 8, "u", "ref", None),
        ("new_order_reference_number", 19, 8, "u", "new_ref", None),
        ("shares", 27, 4, "u", "shares", None),
        ("price", 31, 4, "p4", "price", None),
    ),
    "P": _msg(
        "trade", 44,
        ("order_reference_number", 11, 8, "u", "ref", None),
        ("buy_sell_indicator", 19, 1, "a", "side", None),
        ("shares", 20, 4, "u", "shares", None),
        ("stock", 24, 8, "a", "stock", None),
        ("price", 32, 4, "p4", "price", None),
        ("match_number", 36, 8, "u", "match", None),
    ),
    "Q": _msg(
        "cross_trade", 40,
        ("shares", 11, 8, "u", "shares", None),
        ("stock", 19, 8, "a", "stock", None),
        ("cross_price", 27, 4, "p4", "price", None),
        ("match_number", 31, 8, "u", "match", None),
        ("cross_type", 39, 1, "a", "alpha", 0),
    ),
    "B": _msg("broken_trade", 19, ("match_number", 11, 8, "u", "match", None)),
    "I": _msg(
        "noii", 50,
        ("paired_shares", 11, 8, "u", "aux", 0),
        ("imbalance_shares", 19, 8, "u", "shares", None),
        ("imbalance_direction", 27, 1, "a", "alpha", 0),
        ("stock", 28, 8, "a", "stock", None),
        ("far_price", 36, 4, "p4", "aux", 1),
        ("near_price", 40, 4, "p4", "aux", 2),
        ("current_reference_price", 44, 4, "p4", "price", None),
        ("cross_type", 48, 1, "a", "alpha", 1),
        ("price_variation_indicator", 49, 1, "a", "alpha", 2),
    ),
    "N": _msg("retail_interest", 20, STOCK, ("interest_flag", 19, 1, "a", "alpha", 0)),
    "O": _msg(
        "direct_listing_capital_raise", 48, STOCK,
        ("open_eligibility_status", 19, 1, "a", "alpha", 0),
        ("minimum_allowable_price", 20, 4, "p4", "aux", 0),
        ("maximum_allowable_price", 24, 4, "p4", "aux", 1),
        ("near_execution_price", 28, 4, "p4", "price", None),
        ("near_execution_time", 32, 8, "u", "aux", 2),
        ("lower_price_range_collar", 40, 4, "p4", "aux", 3),
        ("upper_price_range_collar", 44, 4, "p4", "aux", 4),
    ),
}

#: message type letter -> wire length (type byte included)
LENGTHS: dict[str, int] = {t: m[1] for t, m in MESSAGES.items()}
#: message type letter -> name used in summaries and JSON
NAMES: dict[str, str] = {t: m[0] for t, m in MESSAGES.items()}
