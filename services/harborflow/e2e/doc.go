// Package e2e holds harborflow's end-to-end tests, behind the build tag e2e. They run `harborflow run` as a
// process, as a user runs it, against a real CNCF distribution registry (Debian's docker-registry,
// distribution 2.8) whose notifications go to the receiver; they push base images to that registry and read
// the results back as a user would: from the registry (tags, manifests, config labels) and with
// `harborflow events` and `harborflow status`.
//
// `make e2e` installs docker-registry when it is missing, builds bin/harborflow and runs them. By hand:
//
//	HARBORFLOW_BIN=$PWD/bin/harborflow go test -tags e2e -count=1 -v ./services/harborflow/e2e/...
//
// Environment:
//
//	HARBORFLOW_BIN   the harborflow binary under test (required)
//	DOCKER_REGISTRY  the registry binary (default: docker-registry on PATH)
//	E2E_SEED         the seed of the chaos test's kill schedule (default: the clock; the test logs it)
//	E2E_ARTIFACTS    a directory to keep every test's configs, logs and stores in (default: removed)
//	E2E_REGISTRY_PROBE=1  also run TestRegistryLinkRace, a probe of the registry itself
package e2e
