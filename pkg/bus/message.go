package bus

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/event"
)

// Message is one message on the bus, going out (Publish, a handler's output) or coming in (a handler's input).
type Message struct {
	// Subject the message is published to, or was consumed from.
	Subject string
	// ID is the content-derived Nats-Msg-Id; JetStream stores one message per ID within the duplicate window.
	ID string
	// Header holds the correlation id and any other headers. Publish sets Nats-Msg-Id and Content-Type.
	Header nats.Header
	// Data is the body: protojson for every harborflow message.
	Data []byte

	// Set on consumed and read messages only: where the message is stored, when it was stored, and (consumed
	// only) how many times the stage's consumer has delivered it, this time included.
	Stream     string
	Sequence   uint64
	Time       time.Time
	Deliveries uint64
}

// CorrelationID returns the message's correlation id header.
func (m *Message) CorrelationID() string {
	if m.Header == nil {
		return ""
	}
	return m.Header.Get(event.HeaderCorrelationID)
}

// NewMessage encodes pb as protojson into a message for subject with id, carrying correlationID.
func NewMessage(subject, id, correlationID string, pb proto.Message) (*Message, error) {
	data, err := marshalJSON(pb)
	if err != nil {
		return nil, fmt.Errorf("encoding %s for %s: %w", pb.ProtoReflect().Descriptor().FullName(), subject, err)
	}
	h := nats.Header{}
	if correlationID != "" {
		h.Set(event.HeaderCorrelationID, correlationID)
	}
	return &Message{Subject: subject, ID: id, Header: h, Data: data}, nil
}

// Decode decodes the message's protojson body into pb. Unknown fields are ignored so that publishers may add
// fields before consumers know them.
func (m *Message) Decode(pb proto.Message) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(m.Data, pb); err != nil {
		return fmt.Errorf("decoding %s from %s: %w", pb.ProtoReflect().Descriptor().FullName(), m.Subject, err)
	}
	return nil
}

// DeadLetter returns the copy of m that goes to dlq.<stage>: the same body and original headers, plus the
// reason, the stage, where the original came from and its id (Harborflow-Dlq-Msg-Id: the dead letter's own
// Nats-Msg-Id replaces the original's). Its id is derived from the original's, so a stage that dead-letters the
// same message twice stores it once.
func DeadLetter(stage, reason string, m *Message) *Message {
	h := nats.Header{}
	for k, v := range m.Header {
		if k == event.HeaderMsgID {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	h.Set(event.HeaderDLQReason, reason)
	h.Set(event.HeaderDLQStage, stage)
	h.Set(event.HeaderDLQSubject, m.Subject)
	if m.Stream != "" {
		h.Set(event.HeaderDLQStream, m.Stream)
		h.Set(event.HeaderDLQSequence, fmt.Sprint(m.Sequence))
		h.Set(event.HeaderDLQDeliveries, fmt.Sprint(m.Deliveries))
	}
	id := m.ID
	if id == "" && m.Header != nil {
		id = m.Header.Get(event.HeaderMsgID)
	}
	if id == "" {
		id = event.ID(m.Subject, string(m.Data))
	}
	h.Set(event.HeaderDLQMsgID, id)
	return &Message{
		Subject: event.DLQSubject(stage),
		ID:      event.ID("dlq", stage, id, fmt.Sprint(m.Sequence)),
		Header:  h,
		Data:    m.Data,
	}
}
