package bus_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

var tricky = []string{"", "a", "wso2-apim/base/am", `quote " backslash \ slash /`, "line\nbreak\ttab\rcr", "\x00\x01\x1f\x7f",
	"ünïcødé ✓ 𝄞", "<html>&amp;", "\u2028\u2029", "robot$harborflow", "sha256:5e1f7b1c8e3ae0a1a2c7d1b0e6b2f3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"}

func randomTime(r *rand.Rand) *timestamppb.Timestamp {
	nanos := []int64{0, 123_000_000, 123_456_000, 123_456_789, 1, 999_999_999}[r.IntN(6)]
	return timestamppb.New(time.Unix(r.Int64N(4e9), nanos))
}

// fullEvent sets every field of RegistryEvent; it fails when a field was added that it does not set, so the
// direct encoder's test keeps up with the contract.
func fullEvent(t *testing.T, r *rand.Rand) *harborflowv1.RegistryEvent {
	s := func() string { return tricky[r.IntN(len(tricky)-1)+1] }
	params, _ := structpb.NewStruct(map[string]any{"latestPushedK": 5})
	ev := &harborflowv1.RegistryEvent{
		Id: s(), Source: s(), Kind: s(), Type: s(), Registry: s(), Project: s(), Repository: s(), Digest: s(), Tag: s(),
		OccurredAt: randomTime(r), Operator: s(), CorrelationId: s(), Format: s(), MediaType: s(), ResourceUrl: s(),
		RepositoryType: s(), RepositoryCreatedAt: randomTime(r), RequestId: s(), ReceivedAt: randomTime(r),
		Scan: &harborflowv1.ScanSummary{Status: s(), Severity: "High", Total: 3, Counts: map[string]int64{"High": 1, "Low": 2},
			Scanner: &harborflowv1.Scanner{Name: s()}, StartTime: randomTime(r)},
		Replication: &harborflowv1.Replication{JobStatus: "Running", OverrideMode: true, ExecutionId: 12, TaskId: 1 << 60,
			SrcResource:         &harborflowv1.ReplicationResource{Namespace: s()},
			SuccessfulArtifacts: []*harborflowv1.ArtifactInfo{{NameTag: s(), References: []string{s(), s()}}}},
		Retention: &harborflowv1.Retention{Total: 2, Rules: []*harborflowv1.RetentionRule{{Template: "latestPushedK", Params: params,
			ScopeSelectors: map[string]*harborflowv1.SelectorList{"repository": {Selectors: []*harborflowv1.Selector{{Pattern: "**"}}}}}}},
		Quota: &harborflowv1.Quota{Details: s()},
	}
	m := ev.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if !m.Has(fields.Get(i)) {
			t.Fatalf("fullEvent does not set %s: add it", fields.Get(i).Name())
		}
	}
	return ev
}

// sameJSON asserts that the message's encoding and protojson's decode to the same JSON value.
func sameJSON(t *testing.T, pb proto.Message) {
	t.Helper()
	m, err := bus.NewMessage("s", "id", "", pb)
	if err != nil {
		t.Fatal(err)
	}
	want, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, m.Data)
	}
	if err := json.Unmarshal(want, &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("encoding differs from protojson\n got %s\nwant %s", m.Data, want)
	}
	back := pb.ProtoReflect().New().Interface()
	if err := m.Decode(back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, pb) {
		t.Fatalf("round trip changed the message:\n got %v\nwant %v", back, pb)
	}
}

func TestMessageBodiesAreProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ev := fullEvent(t, r)
			sameJSON(t, ev)
			// Sparse events, as the receiver makes them.
			sparse := &harborflowv1.RegistryEvent{Id: ev.Id, Kind: "push", Tag: ev.Tag, OccurredAt: ev.OccurredAt}
			if i%2 == 0 {
				sparse.Scan = ev.Scan
			}
			sameJSON(t, sparse)
		})
	}
	v := int64(0)
	sameJSON(t, &harborflowv1.ImageInspected{Repository: "r", Tags: []string{"a", "b"}, UpdateLevel: &v, Labels: map[string]string{"k": "v"}})
	sameJSON(t, &harborflowv1.ImagePruned{Repository: "r", DryRun: true})
	sameJSON(t, &harborflowv1.RegistryEvent{})
}

func TestMessageBodiesRefuseWhatProtojsonRefuses(t *testing.T) {
	for name, pb := range map[string]proto.Message{
		"invalid UTF-8":       &harborflowv1.RegistryEvent{Tag: "\xff"},
		"timestamp too large": &harborflowv1.RegistryEvent{OccurredAt: &timestamppb.Timestamp{Seconds: 1 << 50}},
	} {
		if _, err := protojson.Marshal(pb); err == nil {
			t.Fatalf("%s: protojson accepts it", name)
		}
		if _, err := bus.NewMessage("s", "id", "", pb); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func pushEvent() *harborflowv1.RegistryEvent {
	return &harborflowv1.RegistryEvent{
		Id: "bdafe00be1b51214d4c73edb68f9f2f0", Source: "harbor", Kind: "push", Type: "PUSH_ARTIFACT", Registry: "harbor.acme.example",
		Project: "wso2-apim", Repository: "wso2-apim/am", Digest: "sha256:5e1f7b1c8e3ae0a1a2c7d1b0e6b2f3c4d5e6f708192a3b4c5d6e7f8091a2b3c4",
		Tag: "4.2.0.15", OccurredAt: timestamppb.New(time.Unix(1763855000, 0)), Operator: "admin", CorrelationId: "bdafe00be1b51214d4c73edb68f9f2f0",
		Format: "harbor-default", ResourceUrl: "harbor.acme.example:443/wso2-apim/am:4.2.0.15", RepositoryType: "private",
		RepositoryCreatedAt: timestamppb.New(time.Unix(1700000000, 0)), ReceivedAt: timestamppb.Now(),
	}
}

// BenchmarkNewMessage compares the message encoding of a push event with protojson.Marshal in the same run.
func BenchmarkNewMessage(b *testing.B) {
	ev := pushEvent()
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bus.NewMessage("registry.harbor.push", ev.Id, ev.CorrelationId, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson-baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protojson.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
