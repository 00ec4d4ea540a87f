package event

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamRegistry = "REGISTRY"
	StreamImage    = "IMAGE"
	StreamDLQ      = "DLQ"
	StreamTask     = "TASK"
)

// StreamNames lists every stream of Streams.
var StreamNames = []string{StreamRegistry, StreamImage, StreamDLQ, StreamTask}

// taskMaxAge bounds how long TASK keeps a task: a task is work a stage asked of itself (re-evaluate a
// promotion), and whoever asked asks again on its next round.
const taskMaxAge = 24 * time.Hour

// Stage names. A consuming stage's name is also its durable consumer's default name and the last token of its
// DLQ subject dlq.<stage>.
const (
	StageInspector = "inspector"
	StageRebuilder = "rebuilder"
	StagePromoter  = "promoter"
	StageRetention = "retention"
	// StageReceiver has no consumer; it names the receiver's DLQ subject for events it cannot use.
	StageReceiver = "receiver"
	// StageWatcher has no consumer: it publishes what it finds by polling.
	StageWatcher = "watcher"
)

// StreamOptions are the operator's choices that shape every stream.
type StreamOptions struct {
	// Replicas per stream: 1 on one server, 3 on a cluster.
	Replicas int
	// DuplicateWindow is how long a Nats-Msg-Id is remembered.
	DuplicateWindow time.Duration
	// MaxAge and MaxBytes bound what a stream keeps; zero means unlimited.
	MaxAge   time.Duration
	MaxBytes int64
}

// Streams returns the definitions of REGISTRY, IMAGE, DLQ and TASK: file storage, limits retention (every stage
// reads every message through its own durable consumer), the operator's replicas, duplicate window and limits;
// TASK keeps a task a day at most.
func Streams(o StreamOptions) []jetstream.StreamConfig {
	def := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		maxBytes := o.MaxBytes
		if maxBytes == 0 {
			maxBytes = -1
		}
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    subjects,
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			Replicas:    max(o.Replicas, 1),
			Duplicates:  o.DuplicateWindow,
			MaxAge:      o.MaxAge,
			MaxBytes:    maxBytes,
		}
	}
	task := def(StreamTask, "work a stage asks of itself: task.<stage>", "task.>")
	if task.MaxAge == 0 || task.MaxAge > taskMaxAge {
		task.MaxAge = taskMaxAge
	}
	return []jetstream.StreamConfig{
		def(StreamRegistry, "registry events: registry.<source>.<kind>", "registry.>"),
		def(StreamImage, "pipeline events: image.<what>", "image.>"),
		def(StreamDLQ, "messages a stage gave up on: dlq.<stage>", "dlq.>"),
		task,
	}
}
