# Run reports (replay/report_html.py) and comparisons (pipeline/compare.py).
# tests/test_report_html.py renders report.html in a real headless browser: Debian's chromium,
# driven by Playwright (the `test` extra). Playwright's own browser download is never used (no
# CDN from these machines): the test launches the executable `chromium` found on PATH. Fonts:
# DejaVu for the page text (matplotlib ships its own for the plots).
APT_PACKAGES += chromium fonts-dejavu-core

RUN ?=
RUNS ?=

.PHONY: report compare
report: setup ## write report.html + PNG plots of a run: make report RUN=runs/DATE/TIME
	@test -n "$(RUN)" || { echo "usage: make report RUN=runs/DATE/TIME"; exit 2; }
	$(PY) -m replay.report_html $(RUN)

compare: setup ## put runs side by side: make compare RUNS='runs/A runs/B' [ARGS='--html cmp.html']
	@test -n "$(RUNS)" || { echo "usage: make compare RUNS='runs/DATE/TIME runs/DATE/TIME' [ARGS='--html out.html']"; exit 2; }
	$(PY) -m pipeline.compare $(RUNS) $(ARGS)

# `make test` must render the page in the browser: a missing chromium fails the test instead of
# skipping it (a bare `pytest` skips it, saying why)
test: export HFTBOT_REQUIRE_BROWSER = 1
