package bus

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// marshalJSON encodes pb as protojson. A RegistryEvent — one per webhook, the receiver's hot path — is written
// directly (protojson.Marshal took a quarter of the receiver's CPU per webhook beyond a minimal handler's);
// its nested detail messages, and every other message, go through protojson. The direct output is protojson
// (JSON field names, RFC 3339 timestamps, zero values omitted): protojson.Unmarshal reads back an equal message,
// and TestMessageBodiesAreProtojson fails when RegistryEvent gains a field this encoder does not write.
func marshalJSON(pb proto.Message) ([]byte, error) {
	if ev, ok := pb.(*harborflowv1.RegistryEvent); ok {
		return appendRegistryEvent(make([]byte, 0, 768), ev)
	}
	return protojson.Marshal(pb)
}

func appendRegistryEvent(b []byte, ev *harborflowv1.RegistryEvent) ([]byte, error) {
	w := jsonObject{b: append(b, '{')}
	w.str("id", ev.GetId())
	w.str("source", ev.GetSource())
	w.str("kind", ev.GetKind())
	w.str("type", ev.GetType())
	w.str("registry", ev.GetRegistry())
	w.str("project", ev.GetProject())
	w.str("repository", ev.GetRepository())
	w.str("digest", ev.GetDigest())
	w.str("tag", ev.GetTag())
	w.time("occurredAt", ev.GetOccurredAt())
	w.str("operator", ev.GetOperator())
	w.str("correlationId", ev.GetCorrelationId())
	w.str("format", ev.GetFormat())
	w.str("mediaType", ev.GetMediaType())
	w.str("resourceUrl", ev.GetResourceUrl())
	w.str("repositoryType", ev.GetRepositoryType())
	w.time("repositoryCreatedAt", ev.GetRepositoryCreatedAt())
	w.str("requestId", ev.GetRequestId())
	w.time("receivedAt", ev.GetReceivedAt())
	if ev.GetScan() != nil {
		w.message("scan", ev.GetScan())
	}
	if ev.GetReplication() != nil {
		w.message("replication", ev.GetReplication())
	}
	if ev.GetRetention() != nil {
		w.message("retention", ev.GetRetention())
	}
	if ev.GetQuota() != nil {
		w.message("quota", ev.GetQuota())
	}
	if w.err != nil {
		return nil, w.err
	}
	return append(w.b, '}'), nil
}

// jsonObject appends the members of a JSON object, omitting zero values as protojson does.
type jsonObject struct {
	b     []byte
	comma bool
	err   error
}

func (w *jsonObject) key(name string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonObject) str(name, v string) {
	if v == "" {
		return
	}
	if !utf8.ValidString(v) {
		w.err = errors.Join(w.err, fmt.Errorf("field %s: invalid UTF-8", name))
		return
	}
	w.key(name)
	w.b = appendString(w.b, v)
}

func (w *jsonObject) time(name string, ts *timestamppb.Timestamp) {
	if ts == nil {
		return
	}
	if err := ts.CheckValid(); err != nil {
		w.err = errors.Join(w.err, fmt.Errorf("field %s: %w", name, err))
		return
	}
	w.key(name)
	w.b = appendTimestamp(w.b, ts.AsTime())
}

func (w *jsonObject) message(name string, m proto.Message) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		w.err = errors.Join(w.err, fmt.Errorf("field %s: %w", name, err))
		return
	}
	w.key(name)
	w.b = append(w.b, raw...)
}

// appendTimestamp writes t as protojson does: RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05")
	if ns := t.Nanosecond(); ns != 0 {
		digits, div := 9, 1
		switch {
		case ns%1_000_000 == 0:
			digits, div = 3, 1_000_000
		case ns%1_000 == 0:
			digits, div = 6, 1_000
		}
		b = append(b, '.')
		b = appendPadded(b, ns/div, digits)
	}
	return append(b, 'Z', '"')
}

func appendPadded(b []byte, n, digits int) []byte {
	var buf [9]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[:digits]...)
}

const hexDigits = "0123456789abcdef"

// appendString writes s (valid UTF-8) as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
