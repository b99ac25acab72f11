"""The Prometheus server process (ipa.monitoring.prometheus) and the PromQL monitor the adapter
reads (ipa.monitoring.monitor)."""
