"""The status service: a Falcon API over the job state, a live dashboard and Prometheus metrics."""
