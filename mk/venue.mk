# The free-running venue simulator (replay/venue, `--clock wall`): a FIX 4.4 acceptor that any
# FIX client can trade against. The replayed market advances with wall time at VENUE_SPEED;
# orders are acknowledged, matched with queue position against the replayed book, and reported.
#
#   make venue                                    # generated sample (09:30-09:46:40), port 9878
#   make venue VENUE_CAPTURE=day.pcap VENUE_START=09:30 VENUE_SPEED=10
#   make venue-acceptance                         # QuickFIX's FIX 4.4 server definitions against it
#
# The client logs on as VENUE_TARGET (SenderCompID) to VENUE_SENDER (TargetCompID), FIX.4.4.
# Each `make venue` starts a fresh trading day in VENUE_STATE; VENUE_RESUME=1 resumes the last
# one instead (its journal and FIX store: orders, queue positions, sequence numbers).
VENUE_CAPTURE ?=
VENUE_SAMPLE := runs/venue/sample.pcap
VENUE_PORT ?= 9878
VENUE_SPEED ?= 1
VENUE_START ?=
VENUE_STATE ?= runs/venue/state
VENUE_SENDER ?= VENUE
VENUE_TARGET ?= CLIENT
VENUE_RESUME ?= 0
VENUE_ARGS ?=
AT_DEFS ?= ../shared/data/quickfix/at-definitions/server/fix44

# ~1000 s of market (500,000 messages, 8 symbols, 2 ms apart on average), deterministic
$(VENUE_SAMPLE): | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -c "from replay.generator import generate; generate('$@', fmt='pcap', n_messages=500_000, \
n_symbols=8, seed=1, mean_gap_ns=2e6)"

.PHONY: venue venue-acceptance
venue: setup $(if $(VENUE_CAPTURE),,$(VENUE_SAMPLE)) ## free-running FIX 4.4 venue [VENUE_PORT VENUE_SPEED VENUE_CAPTURE VENUE_START]
	@if [ "$(VENUE_RESUME)" != 1 ]; then rm -rf $(VENUE_STATE); fi
	$(PY) -m replay.venue --clock wall --speed $(VENUE_SPEED) \
		--capture $(or $(VENUE_CAPTURE),$(VENUE_SAMPLE)) --port $(VENUE_PORT) --state-dir $(VENUE_STATE) \
		--sender $(VENUE_SENDER) --target $(VENUE_TARGET) $(if $(VENUE_START),--start $(VENUE_START)) \
		$(VENUE_ARGS)

venue-acceptance: setup $(VENUE_SAMPLE) ## QuickFIX's FIX 4.4 acceptance definitions against a free-running venue
	$(PY) -m replay.venue.acceptance $(AT_DEFS) --wall-venue $(or $(VENUE_CAPTURE),$(VENUE_SAMPLE))
