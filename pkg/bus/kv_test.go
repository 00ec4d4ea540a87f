package bus_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// withUnknownFields returns the protojson of m with fields a newer writer might have added, at the top level
// and, where m has one, inside a nested message.
func withUnknownFields(t *testing.T, m proto.Message, nested string) []byte {
	t.Helper()
	data, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	fields["addedLater"] = "by a newer replica"
	fields["addedLaterToo"] = map[string]any{"stage": "prod", "gates": []any{map[string]any{"name": "scan"}}}
	switch v := fields[nested].(type) {
	case map[string]any:
		v["addedLater"] = 42
	case []any:
		v[0].(map[string]any)["addedLater"] = 42
	}
	out, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKVDecodesValuesWithUnknownFields(t *testing.T) {
	e := newEnv(t)
	now := timestamppb.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	level := int64(16)
	for _, tc := range []struct {
		bucket string
		value  proto.Message
		nested string
	}{
		{event.BucketImageHistory, &harborflowv1.ImageRecord{Registry: "registry.wso2.com", Repository: "wso2-apim/am",
			Digest: "sha256:aa", Tags: []string{"4.2.0"}, UpdateLevel: &level, FirstSeen: now,
			Platforms: []*harborflowv1.Platform{{Os: "linux", Architecture: "amd64"}}}, "platforms"},
		{event.BucketIndexChildren, &harborflowv1.IndexChild{Registry: "r", Repository: "p", ChildDigest: "sha256:c",
			IndexDigest: "sha256:i", Seen: now}, ""},
		{event.BucketWatcher, &harborflowv1.WatchBaseline{Source: "wso2", Repository: "registry.wso2.com/wso2-apim/am",
			Tag: "4.2.0", Digest: "sha256:aa", Platforms: map[string]string{"linux/amd64": "sha256:bb"}, UpdatedAt: now}, ""},
		{event.BucketRebuilds, &harborflowv1.Build{Recipe: "acme-am", Base: "registry.wso2.com/wso2-apim/am:4.2.0",
			BaseDigest: "sha256:aa", UpdateLevel: 16, State: "built", Started: now,
			Result: &harborflowv1.ImageRebuilt{Recipe: "acme-am", Tag: "4.2.0.16.1"}}, "result"},
		{event.BucketRebuilds, &harborflowv1.RecipeState{Recipe: "acme-am", UpdateLevel: 16, BaseDigest: "sha256:aa",
			Building: &harborflowv1.LineHold{BaseDigest: "sha256:bb", UpdateLevel: 17, Holder: "h", LeaseUntil: now}}, "building"},
		{event.BucketPromotions, &harborflowv1.PromotionState{Chain: "acme-am", Digest: "sha256:aa", Tags: []string{"4.2.0.16.1"},
			Reached: []*harborflowv1.StageEntry{{Stage: "wso2-dev", Repository: "harbor.acme.example/wso2-dev/acme-am", Entered: now}},
			Gates:   []*harborflowv1.Gate{{Name: "max_severity", Verdict: "pending", Reason: "no scan result yet"}}, Verdict: "pending",
			Approvals: []*harborflowv1.Approval{{Stage: "wso2-prod", By: "ana", At: now}}}, "reached"},
		{event.BucketScans, &harborflowv1.ScanResult{Registry: "harbor.acme.example", Digest: "sha256:cc", Status: "Success",
			Severity: "High", At: now}, ""},
	} {
		name := string(tc.value.ProtoReflect().Descriptor().Name())
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			kv, err := e.bus.KeyValue(ctx, tc.bucket)
			if err != nil {
				t.Fatal(err)
			}
			key := event.Key("unknown-fields", name)
			if _, err := kv.PutBytes(ctx, key, withUnknownFields(t, tc.value, tc.nested)); err != nil {
				t.Fatal(err)
			}
			got := tc.value.ProtoReflect().New().Interface()
			if _, err := kv.Get(ctx, key, got); err != nil {
				t.Fatalf("Get of a value with unknown fields: %v", err)
			}
			if !proto.Equal(tc.value, got) {
				t.Errorf("decoded %v, want %v", got, tc.value)
			}
			entries, err := kv.List(ctx, event.Key("unknown-fields", name))
			if err != nil || len(entries) != 1 {
				t.Fatalf("List = %d entries, %v", len(entries), err)
			}
			listed := tc.value.ProtoReflect().New().Interface()
			if err := entries[0].Decode(listed); err != nil {
				t.Errorf("Decode of a listed value with unknown fields: %v", err)
			}
		})
	}
}

// A value that does not decode is permanent (reading it again cannot help), and the error names its key once.
func TestKVGetOfAnUndecodableValue(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	kv, err := e.bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		t.Fatal(err)
	}
	key := event.Key("recipe", "broken")
	if _, err := kv.PutBytes(ctx, key, []byte(`{"updateLevel":"not a number"}`)); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, key, &harborflowv1.RecipeState{})
	if !bus.IsPermanent(err) {
		t.Fatalf("Get of an undecodable value = %v, want a permanent error", err)
	}
	if n := strings.Count(err.Error(), key); n != 1 {
		t.Errorf("error %q names the key %d times, want once", err, n)
	}
}

func TestKVCompareAndSet(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	kv, err := e.bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		t.Fatal(err)
	}
	key := event.Key("recipe", "acme-am")
	var got harborflowv1.RecipeState
	if _, err := kv.Get(ctx, key, &got); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("Get of a missing key = %v, want ErrKeyNotFound", err)
	}
	rev, err := kv.Create(ctx, key, &harborflowv1.RecipeState{Recipe: "acme-am", UpdateLevel: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Create(ctx, key, &harborflowv1.RecipeState{Recipe: "acme-am", UpdateLevel: 2})
	if !errors.Is(err, bus.ErrKeyExists) || !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Errorf("second Create = %v, want ErrKeyExists, an ErrRevisionMismatch", err)
	}
	next, err := kv.Update(ctx, key, &harborflowv1.RecipeState{Recipe: "acme-am", UpdateLevel: 3}, rev)
	if err != nil || next <= rev {
		t.Fatalf("Update at the read revision = %d, %v", next, err)
	}
	_, err = kv.Update(ctx, key, &harborflowv1.RecipeState{Recipe: "acme-am", UpdateLevel: 4}, rev)
	if !errors.Is(err, bus.ErrRevisionMismatch) || errors.Is(err, bus.ErrKeyExists) {
		t.Errorf("Update at a stale revision = %v, want ErrRevisionMismatch only", err)
	}
	if r, err := kv.Get(ctx, key, &got); err != nil || r != next || got.GetUpdateLevel() != 3 {
		t.Errorf("Get = %d %v, %v; want revision %d, update level 3", r, &got, err, next)
	}
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.GetBytes(ctx, key); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Errorf("GetBytes of a deleted key = %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.CreateBytes(ctx, key, []byte(`{}`)); err != nil {
		t.Errorf("Create over a deleted key: %v", err)
	}
}

func TestKVWatchSeesLaterChangesOnly(t *testing.T) {
	e := newEnv(t)
	ctx := testContext(t)
	kv, err := e.bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		t.Fatal(err)
	}
	key, other := event.Key("recipe", "a"), event.Key("recipe", "b")
	if _, err := kv.PutBytes(ctx, key, []byte(`{"updateLevel":"1"}`)); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutBytes(ctx, other, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	rev, err := kv.PutBytes(ctx, key, []byte(`{"updateLevel":"2"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(t, w.Updates(), "the update"); got.Key != key || got.Revision != rev || got.Deleted {
		t.Errorf("update %+v, want %s at revision %d (the value before the watch is not sent)", got, key, rev)
	}
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, w.Updates(), "the delete"); !got.Deleted {
		t.Errorf("update %+v, want the delete", got)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case e, ok := <-w.Updates():
		if ok {
			t.Errorf("update %+v after Stop", e)
		}
	case <-time.After(wait):
		t.Fatal("Updates not closed after Stop")
	}
}
