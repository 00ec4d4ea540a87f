// Package bus is the only place harborflow touches JetStream; no stage or command imports nats.go's jetstream
// package. It:
//
//   - connects (Connect), ensures the streams and KV buckets of package event (EnsureStreams,
//     EnsureKeyValues), and reports readiness (Ready);
//   - publishes with a content-derived Nats-Msg-Id and returns once the stream has stored the message
//     (Publish);
//   - runs stage handlers on durable pull consumers (Consume): a stage's subjects may lie in several streams
//     (one durable consumer per stream, under one durable name, feeding one handler), and its durable name is
//     separate from the stage name that names its DLQ subject dlq.<stage>, logs and metrics;
//   - keeps state in KV buckets (KeyValue): protobuf values stored as protojson and decoded with unknown
//     fields discarded, so that a newer replica's fields never break an older one; compare-and-set with
//     Create and Update (ErrKeyExists, ErrRevisionMismatch); raw bytes where a value is not a message;
//   - reads streams without consuming them (Read) and reports stream and consumer state (StreamInfo,
//     Consumers, ConsumerInfo), for the ops commands.
//
// A handler is a function from an input message to output messages (watermill's HandlerFunc); it never acks
// or publishes itself. The consumer turns its result into one action:
//
//	nil                 → publish the handler's output messages, then ack
//	retryable error     → nak with a back-off delay (until MaxDeliver, then as permanent)
//	Permanent(err)      → copy to dlq.<stage> with the reason and the original headers, then term
//
// The bus is a stage's one retry layer: a handler fails fast and the consumer redelivers after its back-off.
//
// Consumer.Shutdown stops intake at once, lets running handlers finish for a grace (its ctx), then cancels
// them; the messages it did not finish are nak'ed without delay, so another replica or the next start takes
// them at once rather than after AckWait.
//
// With WithMetrics, each consumer reports harborflow_consumer_messages_total{stage,outcome},
// harborflow_consumer_handler_duration_seconds{stage}, and, read from the server at each scrape,
// harborflow_consumer_pending_messages, _ack_pending_messages and _redelivered_messages{stage,stream}.
package bus
