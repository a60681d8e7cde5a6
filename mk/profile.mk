# Sampling profile of decode + book by source line of kernels/book.py (bench/profile_book.py):
# perf record on a timer (cpu-clock: no PMU needed) + llvm-objdump's line table (Debian llvm,
# in the Makefile's APT_PACKAGES; perf from mk/perf.mk).
.PHONY: profile-book
profile-book: setup ## where the book's time goes, by source line: make profile-book [ARGS='--deep-messages 30000000']
	$(PY) -m bench.profile_book $(ARGS)
