# Watching a run (pipeline/metrics.py, docker/prometheus, docker/grafana): promtool checks the
# Prometheus config and lints what the metrics endpoint serves (tests/test_metrics.py; skipped
# without it). Debian ships promtool in the prometheus package.
APT_PACKAGES += prometheus

.PHONY: check-metrics-config
check-metrics-config: setup ## promtool: check docker/prometheus/prometheus.yml
	promtool check config docker/prometheus/prometheus.yml
