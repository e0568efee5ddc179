// Package telemetry is how lockguard is observed: the admin HTTP endpoint
// (health and readiness now; metrics, traces and the status page build on it).
// It reads state from the proxy and guard through small functions and never
// changes it.
package telemetry
