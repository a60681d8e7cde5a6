# perf stat for the book benchmark's cache-miss figures (bench/perf_book.py): Debian linux-perf;
# GNU time for the whole-process rows' peak RSS (bench/book.py).
# Hardware counters also need a PMU the kernel exposes (not in most VMs) and
# kernel.perf_event_paranoid <= 2 (or root); bench/perf_book.py says which is missing.
APT_PACKAGES += linux-perf time

.PHONY: perf-book
perf-book: setup ## cache misses per message, our book vs itch-book: make perf-book [ARGS='--deep-messages 30000000']
	$(PY) -m bench.perf_book $(ARGS)
