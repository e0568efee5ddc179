// Package deploy holds what it takes to run lockguard somewhere real: the
// Kubernetes manifests in kubernetes/ (a Deployment of several replicas, its
// Service, ConfigMap and PodDisruptionBudget), a Grafana dashboard in grafana/
// and Prometheus alert rules in prometheus/.
//
// It has no Go code of its own. Its tests exist because an example manifest
// that was never parsed rots silently: they read every manifest with the
// Kubernetes API types in strict mode, load the ConfigMap's settings and the
// container's arguments with lockguard's own configuration loader, and check
// what a rolling update depends on — probes on the admin port, a preStop
// sleep, a grace period longer than preStop plus drain-timeout, selectors that
// match, and a non-root, read-only container. docs/scale-out.md explains why
// replicas need no coordination. The dashboard and rules tests scrape a real
// telemetry provider and fail on any PromQL reference to a metric or label
// lockguard does not export.
package deploy
