#!/usr/bin/env bash
# make run: the whole system on one machine, state in ./var. Starts the Harbor stand-in (harborflow dev harbor)
# on 127.0.0.1:8880 with the projects of deploy/harborflow.yaml (scan on push) and a local registry on
# 127.0.0.1:5000 standing in for registry.wso2.com (Debian's docker-registry, deploy/wso2-registry.yml, polled by
# the watcher), waits until both answer, gives the stand-in's projects their webhook policy (harborflow harbor
# setup-webhooks), then runs every stage in the foreground. Ctrl-C stops harborflow, then what this started.
# The two helpers log to var/log/. Arguments go to `harborflow run` (make run STAGES=a,b: --stages a,b).
set -euo pipefail
cd "$(dirname "$0")/.."

config=${CONFIG:-deploy/harborflow.yaml}
harbor=127.0.0.1:8880
registry=127.0.0.1:5000
projects=(wso2-dev wso2-staging wso2-prod)

pids=()
stop() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}
trap stop EXIT

# listening HOST:PORT: whether something accepts connections there (bash's /dev/tcp: no curl needed).
listening() {
	(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# wait_for NAME PID COMMAND...: until COMMAND succeeds, as long as PID lives, at most 30 s.
wait_for() {
	local name=$1 pid=$2 deadline=$((SECONDS + 30))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run: $name exited; its log: var/log/$name.log" >&2
			tail -n 20 "var/log/$name.log" >&2
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "run: $name not ready after 30 s ($*); its log: var/log/$name.log" >&2
			exit 1
		fi
		sleep 0.2
	done
}

# Something already on a port would answer for the helper that could not start: say so instead.
for addr in "$harbor" "$registry"; do
	if listening "$addr"; then
		echo "run: $addr is taken (another make run, make harbor or make registry?)" >&2
		exit 1
	fi
done

mkdir -p var/log var/harbor var/wso2-registry
args=(--listen "$harbor" --data var/harbor)
for p in "${projects[@]}"; do
	args+=(--project "$p:auto_scan")
done
./bin/harborflow dev harbor "${args[@]}" >var/log/harbor.log 2>&1 &
pids+=($!)
# The banner comes once the projects exist.
wait_for harbor "${pids[-1]}" grep -q '^harbor stand-in listening' var/log/harbor.log

docker-registry serve deploy/wso2-registry.yml >var/log/wso2-registry.log 2>&1 &
pids+=($!)
wait_for wso2-registry "${pids[-1]}" listening "$registry"

echo "run: Harbor stand-in http://$harbor (admin / Harbor12345; projects ${projects[*]}), registry.wso2.com stand-in http://$registry" >&2
# The projects of the rebuild target and of every promotion stage get the policy.
./bin/harborflow harbor setup-webhooks --config "$config" >&2

./bin/harborflow run --config "$config" "$@"
