# XDP programs (xdp_progs/*.bpf.c -> build/xdp/*.o) with clang -target bpf.
# `make xdp`; the loader (bridges/xdp/loader.py) runs the same command on demand when the
# object is missing or older than its sources, so `make test` / `make run` need no clang
# unless the live feed is used.
CLANG ?= clang
XDP_SRC := $(wildcard xdp_progs/*.bpf.c)
XDP_OBJ := $(patsubst xdp_progs/%.bpf.c,build/xdp/%.o,$(XDP_SRC))
XDP_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu -Ixdp_progs

.PHONY: xdp
xdp: $(XDP_OBJ) ## build the XDP programs (build/xdp/*.o; needs clang and libbpf-dev)

build/xdp/%.o: xdp_progs/%.bpf.c $(wildcard xdp_progs/*.h)
	@command -v $(CLANG) >/dev/null || { echo "error: clang not found: apt-get install clang llvm libbpf-dev (or make setup as root)"; exit 1; }
	@mkdir -p $(@D)
	$(CLANG) $(XDP_CFLAGS) -c $< -o $@
