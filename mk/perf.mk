# perf stat for the book benchmark's cache-miss figures (bench/perf_book.py): Debian linux-perf;
# GNU time for the whole-process rows' peak RSS (bench/book.py).
# Hardware counters also need a PMU the kernel exposes (not in most VMs) and
# kernel.perf_event_paranoid <= 2 (or root); without them perf-book falls back to a cachegrind
# simulation of this CPU's caches (valgrind: mk/cachesim.mk), labelled as simulated.
APT_PACKAGES += linux-perf time

.PHONY: perf-book
perf-book: setup ## cache misses per message, our book vs itch-book (perf stat, else cachegrind): make perf-book [ARGS='--tool cachegrind --noprefetch --shallow']
	$(PY) -m bench.perf_book $(ARGS)
