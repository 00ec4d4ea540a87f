// Package event is the NATS contract of harborflow: subject names, header names, content-derived message ids,
// and the definitions of the streams and durable consumers every stage relies on.
//
// Streams: REGISTRY (registry.<source>.<kind>), IMAGE (image.<what>), DLQ (dlq.<stage>) and TASK
// (task.<stage>, work a stage asks of itself, such as evaluating a promotion again). Message bodies
// are the protobuf messages of proto/harborflow/v1 encoded as protojson. See docs/events.md.
package event
