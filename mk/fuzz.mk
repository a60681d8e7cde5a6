# Fuzzing at scale (bench/fuzz.py): millions of mutated packets through the compiled framing and
# decode kernels, every byte accounted for. The fast property-based fuzz tests stay in `make test`
# (tests/test_fuzz.py).
.PHONY: fuzz
fuzz: setup ## fuzz framing + decode: 10M mutated packets, zero crashes, every byte accounted for [ARGS='--packets N --seed S']
	$(PY) -m bench.fuzz $(ARGS)
