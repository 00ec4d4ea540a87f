package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// ID derives a message id from parts: the first 128 bits of a SHA-256 over the length-prefixed parts, in hex.
// Equal parts give equal ids, so a retried or duplicated event is stored once (JetStream Nats-Msg-Id); the
// length prefix keeps ("ab","c") and ("a","bc") apart.
func ID(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// ArtifactID is the id of an artifact, scan or quota event: (source, the registry's event type — Harbor's
// PUSH_ARTIFACT, QUOTA_EXCEED, ..., not the coarser kind —, repository, digest, tag, occurred-at in unix
// seconds). tag is the real tag: a digest Harbor put in `tag` must be blanked by the caller, so the Default and
// CloudEvents copies of one event (DESIGN.md principle 3) get one id.
func ArtifactID(source, eventType, repository, digest, tag string, occurredAt int64) string {
	return ID("artifact", source, eventType, repository, digest, tag, strconv.FormatInt(occurredAt, 10))
}

// ReplicationID is the id of a replication task status change: (source, execution id, task id, job status,
// occurred-at). Harbor before 2.13 sends no execution or task id; then the whole replication object, in
// canonical JSON, stands in for them.
func ReplicationID(source string, executionID, taskID int64, jobStatus string, replication json.RawMessage, occurredAt int64) string {
	at := strconv.FormatInt(occurredAt, 10)
	if executionID == 0 && taskID == 0 {
		return ID("replication-object", source, Canonical(replication), at)
	}
	return ID("replication", source, strconv.FormatInt(executionID, 10), strconv.FormatInt(taskID, 10), jobStatus, at)
}

// RetentionID is the id of a tag retention report: (source, the whole retention object in canonical JSON,
// occurred-at).
func RetentionID(source string, retention json.RawMessage, occurredAt int64) string {
	return ID("retention", source, Canonical(retention), strconv.FormatInt(occurredAt, 10))
}

// DistributionID is the id of one event of a distribution notification envelope: (source, the registry's event
// id, action, repository, digest, tag). A distribution registry re-sends an undelivered envelope unchanged, so
// its event id is stable across retries; the content keeps two registries' ids apart.
func DistributionID(source, registryEventID, action, repository, digest, tag string) string {
	return ID("distribution", source, registryEventID, action, repository, digest, tag)
}

// InspectedID is the id of an image.inspected: (registry/repository, digest, the push event's tag). The same
// digest under the same tag is one message, however often it is inspected again.
func InspectedID(repository, digest, tag string) string {
	return ID("inspected", repository, digest, tag)
}

// RejectedID is the id of an image.rejected: (registry/repository, digest, the push event's tag).
func RejectedID(repository, digest, tag string) string {
	return ID("rejected", repository, digest, tag)
}

// RebuiltID is the id of an image.rebuilt: (recipe, base digest, the tag built), so that publishing a build
// again stores it once.
func RebuiltID(recipe, baseDigest, tag string) string {
	return ID("rebuilt", recipe, baseDigest, tag)
}

// PollID is the id of a push the watcher saw by polling: (source, registry/repository, tag, the digest the tag
// pointed to before, the digest it points to now). The previous digest keeps a tag that moves back and forth
// from folding into an earlier event of the duplicate window.
func PollID(source, repository, tag, previous, digest string) string {
	return ID("poll", source, repository, tag, previous, digest)
}

// Canonical returns raw JSON with object keys sorted and insignificant space removed, so that two encodings of
// the same object compare equal. Numbers keep their text. Invalid JSON is returned as it is.
func Canonical(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

// PromotedID is the id of an image.promoted: (chain, digest, the stage it left, the stage it entered). An image
// enters a stage of a chain once, so a redone promotion publishes the same message.
func PromotedID(chain, digest, from, to string) string {
	return ID("promoted", chain, digest, from, to)
}

// PromotionTaskID is the id of a task to evaluate a promotion again: (chain, digest, the revision of its state
// in the promotions bucket). Replicas that find the same state due ask once; a state written since is asked
// for again.
func PromotionTaskID(chain, digest string, revision uint64) string {
	return ID("promotion-task", chain, digest, strconv.FormatUint(revision, 10))
}

// RetentionTaskID is the id of a task to plan a repository: (repository, the slot it is for — a debounce
// window or a schedule tick, in unix seconds). Replicas, and events within one window, ask once.
func RetentionTaskID(repository string, slot int64) string {
	return ID("retention-task", repository, strconv.FormatInt(slot, 10))
}

// PrunedID is the id of an image.pruned: (repository, dry run, the plan: every decision in order). The same
// plan of a repository is stored once within the duplicate window.
func PrunedID(repository string, dryRun bool, plan string) string {
	return ID("pruned", repository, strconv.FormatBool(dryRun), plan)
}

// BlockedID is the id of an image.blocked: (chain, digest, the stage it leaves, the stage it may not enter, the
// verdict: each gate's name, verdict and reason). The same verdict twice is one message; a different one is
// another.
func BlockedID(chain, digest, from, to, verdict string) string {
	return ID("blocked", chain, digest, from, to, verdict)
}
