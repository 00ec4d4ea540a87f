package event

// Header names on every harborflow message.
const (
	// HeaderMsgID is JetStream's de-duplication header; its value is a content-derived id (see ID).
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderCorrelationID is set at the edge (receiver, watcher) and copied to every message an event causes.
	HeaderCorrelationID = "Harborflow-Correlation-Id"
	// HeaderContentType names the body encoding: always application/json (protojson).
	HeaderContentType = "Content-Type"
	// ContentTypeJSON is the Content-Type of every message body.
	ContentTypeJSON = "application/json"
)

// Headers a stage adds when it moves a message to the DLQ; the original headers are kept as they were.
const (
	// HeaderDLQReason says why the stage gave up, in words a person can act on.
	HeaderDLQReason = "Harborflow-Dlq-Reason"
	// HeaderDLQStage names the stage that gave up.
	HeaderDLQStage = "Harborflow-Dlq-Stage"
	// HeaderDLQSubject is the subject the message was consumed from.
	HeaderDLQSubject = "Harborflow-Dlq-Subject"
	// HeaderDLQStream and HeaderDLQSequence locate the original message.
	HeaderDLQStream   = "Harborflow-Dlq-Stream"
	HeaderDLQSequence = "Harborflow-Dlq-Sequence"
	// HeaderDLQDeliveries is how many times the stage tried.
	HeaderDLQDeliveries = "Harborflow-Dlq-Deliveries"
	// HeaderDLQMsgID is the original's Nats-Msg-Id (the dead letter has its own), so that a replay can
	// derive its id from it.
	HeaderDLQMsgID = "Harborflow-Dlq-Msg-Id"
	// HeaderDLQPrefix begins every Harborflow-Dlq-* header; a replay drops them all.
	HeaderDLQPrefix = "Harborflow-Dlq-"
)
