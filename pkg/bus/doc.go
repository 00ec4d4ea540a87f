// Package bus is the only place harborflow touches JetStream: it connects, ensures the streams, publishes
// with a content-derived Nats-Msg-Id and waits for the store's ack, and runs stage handlers on durable pull
// consumers, turning each handler's result into one action:
//
//	nil                 → publish the handler's output messages, then ack
//	retryable error     → nak with a back-off delay (until MaxDeliver, then as permanent)
//	Permanent(err)      → copy to dlq.<stage> with the reason and the original headers, then term
//
// A handler is a function from an input message to output messages (watermill's HandlerFunc); it never acks
// or publishes itself.
package bus
