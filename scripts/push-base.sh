#!/usr/bin/env bash
# push-base.sh LEVEL [REPOSITORY [LABEL=VALUE ...]]: push a WSO2-like base as WSO2 would, to make run's
# registry.wso2.com stand-in: a two-platform image (linux/amd64, linux/arm64) of three layers — the OS, the
# product under /home/wso2carbon owned by wso2carbon (802), the update level's changes — running as 802:802,
# labelled update_level=LEVEL (and any LABEL=VALUE given), tagged 4.2.0.LEVEL, then the tag 4.2.0 moved onto it.
# REPOSITORY defaults to 127.0.0.1:5000/wso2-apim/am. The Harbor stand-in's scanner reads the label
# harbortest.severity (harbortest.severity=High: its scan finds a High vulnerability). Uses crane (pinned as in
# the Makefile; installed into .tmp/bin when missing) — any OCI tool would do.
set -euo pipefail
cd "$(dirname "$0")/.."

level=${1:?usage: scripts/push-base.sh LEVEL [REPOSITORY [LABEL=VALUE ...]]}
repo=${2:-127.0.0.1:5000/wso2-apim/am}
labels=()
for l in "${@:3}"; do
	labels+=(--label "$l")
done
crane_version=$(sed -n 's/^CRANE_VERSION := //p' Makefile)
export PATH=$PWD/.tmp/bin:$PATH
if ! command -v crane >/dev/null; then
	GOBIN=$PWD/.tmp/bin go install "github.com/google/go-containerregistry/cmd/crane@$crane_version"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# crane logs every blob on stderr: keep it, and show it only when crane fails.
crane() {
	command crane "$@" 2>"$tmp/crane.log" || { cat "$tmp/crane.log" >&2; return 1; }
}
manifests=()
for platform in linux/amd64 linux/arm64; do
	# Three layers, as a WSO2 product image has them: the OS (the same at every update level), the product
	# under /home/wso2carbon owned by wso2carbon (802), and the update level's changes.
	root=$tmp/$platform
	mkdir -p "$root/os/etc" "$root/os/usr/lib/jvm/java-17/bin" \
		"$root/product/home/wso2carbon/wso2am-4.2.0/"{bin,lib,repository/conf} "$root/update/home/wso2carbon/wso2am-4.2.0/updates"
	printf 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n' >"$root/os/etc/os-release"
	printf '#!/bin/sh\necho java 17 %s\n' "$platform" >"$root/os/usr/lib/jvm/java-17/bin/java"
	printf '#!/bin/sh\nexec java -jar lib/api-manager.jar "$@"\n' >"$root/product/home/wso2carbon/wso2am-4.2.0/bin/api-manager.sh"
	printf '[server]\nhostname = "localhost"\n' >"$root/product/home/wso2carbon/wso2am-4.2.0/repository/conf/deployment.toml"
	head -c 262144 /dev/urandom >"$root/product/home/wso2carbon/wso2am-4.2.0/lib/api-manager.jar"
	echo "$level" >"$root/update/home/wso2carbon/wso2am-4.2.0/updates/update_level"
	head -c 65536 /dev/urandom >"$root/update/home/wso2carbon/wso2am-4.2.0/updates/update-$level.zip"
	tar -C "$root/os" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$tmp/os.tar" etc usr
	tar -C "$root/product" --owner=802 --group=802 --numeric-owner --mtime=@0 -cf "$tmp/product.tar" home
	tar -C "$root/update" --owner=802 --group=802 --numeric-owner --mtime=@0 -cf "$tmp/update.tar" home
	# Built in a scratch repository, then pushed by digest (no tag) into the base's repository.
	scratch=${repo%%/*}/scratch/base:${platform//\//-}
	crane append --oci-empty-base -f "$tmp/os.tar" -f "$tmp/product.tar" -f "$tmp/update.tar" -t "$scratch" >/dev/null
	manifests+=(-m "$(crane mutate "$scratch" --set-platform "$platform" --user 802:802 \
		--label update_level="$level" --label org.opencontainers.image.version="4.2.0.$level" "${labels[@]}" --repo "$repo")")
done
crane index append --docker-empty-base=false "${manifests[@]}" -t "$repo:4.2.0.$level" >/dev/null
crane tag "$repo:4.2.0.$level" 4.2.0
echo "pushed $repo:4.2.0.$level and $repo:4.2.0 ($(crane digest "$repo:4.2.0.$level"), linux/amd64 and linux/arm64, update_level=$level)"
