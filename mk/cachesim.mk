# valgrind for `make perf-book` where perf has no hardware counters (most VMs): cachegrind's
# simulated caches, sized as this CPU's (bench/perf_book.py --tool cachegrind).
APT_PACKAGES += valgrind
