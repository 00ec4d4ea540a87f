// Package harbortest is a Harbor stand-in for tests and the demo: Harbor's REST API v2.0 (the part harborflow
// uses), a registry front through which any client pushes and pulls, webhook deliveries and a scanner, backed by
// a real registry in-process. It behaves as ../shared/HARBOR.md describes, and where a real Harbor 2.13.5 was seen
// doing something (HARBOR.md §7), as it was seen.
package harbortest
