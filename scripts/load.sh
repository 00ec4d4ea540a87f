#!/usr/bin/env bash
# Receiver load test (`make bench`): the receiver against a minimal echo handler and a bare JetStream publish
# loop, same payloads and concurrency, with sync_always true and false. See
# services/receiver/cmd/receiver-load/main.go for what is measured and how to read the table.
# Flags given here override the defaults below, e.g.:
#   ./scripts/load.sh -concurrency 16 -modes false -duration 10s
#   ./scripts/load.sh -variants receiver -concurrency 16 -modes false -cpuprofile /tmp/receiver.pprof
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./services/receiver/cmd/receiver-load \
	-duration 3s -rounds 3 -warmup 500ms -concurrency 1,16,64 -modes true,false -variants minimal,receiver,bare \
	"$@"
