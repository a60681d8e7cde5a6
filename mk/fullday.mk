# A generated 100M-message deep day (peak ~5.5M live orders, 500 symbols, 3.1 GB BinaryFILE)
# replayed through `hftbot run` with book=full_day (bench/fullday.py). Long (minutes): not part
# of `make test`. The day is written once under .cache/fullday/ and reused.
FULLDAY_MESSAGES ?= 100000000

.PHONY: fullday-day
fullday-day: setup ## a 100M-message deep day through hftbot run, book=full_day: time, CPU, peak RSS [FULLDAY_MESSAGES=N ARGS='-- key=value']
	$(PY) -m bench.fullday --messages $(FULLDAY_MESSAGES) $(ARGS)
