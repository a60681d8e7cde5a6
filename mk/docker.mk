# Container images (docker/): `make image` builds the CPU image with podman (or buildah, or
# docker: IMAGE_TOOL=...), `make image-run` runs a smoke replay in it, `make image-cuda` builds the
# CUDA image. None of these is part of `make test` (see docker/README.md for what was built here).
#
# BASE is the Debian 12 image the Dockerfile starts from. When it cannot be pulled (a host that
# reaches no container registry, only the Debian archive and PyPI), `make image` makes one from
# the Debian archive with debootstrap (`make base-image`: the same minbase bookworm rootfs the
# official image is made from) and builds on that.
IMAGE_TOOL ?=
IMAGE ?= localhost/hftbot
BASE ?= docker.io/library/debian:bookworm-slim
CUDA_BASE ?= docker.io/nvidia/cuda:13.0.2-base-ubuntu22.04
LOCAL_BASE := localhost/hftbot-base:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# --network host: RUN steps use the host's network (no bridge/netavark needed); --isolation chroot:
# RUN steps without an OCI runtime (crun refuses this host's hybrid cgroup layout)
IMAGE_BUILD_FLAGS ?= --network host $(if $(findstring docker,$(IMAGE_TOOL)),,--isolation chroot)
# the CA bundle pip trusts during the build (a build secret, in no layer): the host's, so that a
# TLS-intercepting proxy between the build and PyPI is trusted as it is on the host
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
_secret = $(if $(wildcard $(CA_BUNDLE)),--secret id=ca$(comma)src=$(CA_BUNDLE))
comma := ,
IMAGE_DIR := .cache/image
# `make image-run` (podman): runc where it is installed (crun 1.8 refuses hosts whose cgroup v2
# hierarchy is mounted beside v1 with controllers, "hybrid mode"), and explicit ulimits (podman's
# default nofile of 1048576 exceeds the hard limit of hosts without CAP_SYS_RESOURCE)
IMAGE_RUNTIME ?= $(if $(findstring docker,$(IMAGE_TOOL)),,$(notdir $(shell command -v runc)))
IMAGE_RUN_FLAGS ?= --network host --ulimit nofile=$(shell ulimit -Hn):$(shell ulimit -Hn) --ulimit nproc=32768:32768
# shell prelude of the recipes: $$tool (found when the recipe runs: image-tools may install it) and
# $$build, its build command (podman/docker `build`, buildah `bud`); $$ign: podman and buildah take
# the ignore file as a flag, docker (BuildKit) finds the .dockerignore beside each Dockerfile by itself
_tool = tool="$${IMAGE_TOOL:-$$(command -v podman || command -v buildah || command -v docker)}"; \
	case "$$tool" in *buildah) build="$$tool bud";; *) build="$$tool build";; esac; \
	case "$$tool" in *docker) ign=;; *) ign=--ignorefile;; esac;
export IMAGE_TOOL

.PHONY: image image-run image-cuda base-image image-tools

image-tools:
	@$(_tool) if [ -z "$$tool" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing podman, buildah and debootstrap (Debian packages)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap >/dev/null; \
		else echo "error: no podman, buildah or docker: apt-get install podman buildah (or set IMAGE_TOOL)"; exit 1; fi; \
	fi

base-image: image-tools ## make a Debian 12 base image from the Debian archive (debootstrap; no registry needed)
	@command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	@$(_tool) rm -rf $(IMAGE_DIR)/rootfs && mkdir -p $(IMAGE_DIR) && \
	debootstrap --variant=minbase bookworm $(IMAGE_DIR)/rootfs $(DEBIAN_MIRROR) >$(IMAGE_DIR)/debootstrap.log 2>&1 \
		|| { echo "error: debootstrap failed (tail of $(IMAGE_DIR)/debootstrap.log):"; tail -5 $(IMAGE_DIR)/debootstrap.log; exit 1; }; \
	printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		$(DEBIAN_MIRROR) $(DEBIAN_MIRROR) > $(IMAGE_DIR)/rootfs/etc/apt/sources.list.d/debian.sources && \
	rm -f $(IMAGE_DIR)/rootfs/etc/apt/sources.list && \
	rm -rf $(IMAGE_DIR)/rootfs/var/cache/apt/archives/*.deb $(IMAGE_DIR)/rootfs/var/lib/apt/lists/* && \
	tar -C $(IMAGE_DIR)/rootfs --numeric-owner -c . | $$tool import --change 'CMD ["/bin/bash"]' - $(LOCAL_BASE) >/dev/null && \
	rm -rf $(IMAGE_DIR)/rootfs && echo "base image $(LOCAL_BASE) (debootstrap bookworm minbase from $(DEBIAN_MIRROR))"

image: image-tools ## build the CPU image (docker/Dockerfile.cpu) as $(IMAGE):cpu; BASE=... picks the base
	@$(_tool) base="$(BASE)"; mkdir -p $(IMAGE_DIR); \
	if ! $$tool pull -q "$$base" >/dev/null 2>$(IMAGE_DIR)/pull.log; then \
		echo "note: cannot pull $$base ($$(tail -1 $(IMAGE_DIR)/pull.log | cut -c1-160))"; \
		echo "note: building on a Debian base made from the Debian archive instead ($(LOCAL_BASE))"; \
		$$tool image exists $(LOCAL_BASE) 2>/dev/null || $(MAKE) --no-print-directory base-image || exit 1; \
		base=$(LOCAL_BASE); \
	fi; \
	echo "$$build -f docker/Dockerfile.cpu --build-arg BASE=$$base -t $(IMAGE):cpu ."; \
	$$build $(IMAGE_BUILD_FLAGS) $${ign:+$$ign docker/Dockerfile.cpu.dockerignore} --build-arg BASE=$$base $(_secret) \
		-f docker/Dockerfile.cpu -t $(IMAGE):cpu .

image-run: ## run the pipeline in the CPU image: make image-run CONF=smoke [ARGS=...]; runs land in .cache/image/data
	@mkdir -p $(IMAGE_DIR)/data $(IMAGE_DIR)/numba && chmod 0777 $(IMAGE_DIR)/data $(IMAGE_DIR)/numba
	@$(_tool) set -x; $$tool $(if $(IMAGE_RUNTIME),--runtime $(IMAGE_RUNTIME)) run --rm $(IMAGE_RUN_FLAGS) \
		-v $(CURDIR)/$(IMAGE_DIR)/data:/data -v $(CURDIR)/$(IMAGE_DIR)/numba:/var/cache/hftbot/numba $(IMAGE):cpu \
		run --config-name $(CONF) feed.sample.dir=/data/samples $(ARGS)

image-cuda: image-tools ## build the CUDA image (docker/Dockerfile.cuda, numba-cuda on nvidia/cuda) as $(IMAGE):cuda
	@$(_tool) set -x; $$build $(IMAGE_BUILD_FLAGS) $${ign:+$$ign docker/Dockerfile.cuda.dockerignore} --build-arg BASE=$(CUDA_BASE) $(_secret) \
		-f docker/Dockerfile.cuda -t $(IMAGE):cuda .

# the live pod's capabilities (docker/k8s/deployment.yaml) and seccomp setting, in the image
K8S_CAPS := BPF,NET_ADMIN,NET_RAW,PERFMON,IPC_LOCK
.PHONY: image-xdp-check
image-xdp-check: ## load XDP + open AF_XDP in the CPU image with only the k8s capability set (own netns)
	@$(_tool) set -x; $$tool $(if $(IMAGE_RUNTIME),--runtime $(IMAGE_RUNTIME)) run --rm $(filter-out --network host,$(IMAGE_RUN_FLAGS)) \
		--network none --user 0 --cap-drop ALL --cap-add $(K8S_CAPS) --security-opt seccomp=unconfined \
		-v $(CURDIR)/docker/xdp_caps_check.py:/check.py:ro --entrypoint python $(IMAGE):cpu /check.py
