package harborflow

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// TestRecordApprovalRetriesAConflict writes the promoter's next evaluation between approve's read and its
// write: the write is refused by compare-and-set, approve reads again and records its approval on top, so
// neither write is lost.
func TestRecordApprovalRetriesAConflict(t *testing.T) {
	srv := bustest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := srv.Bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("b", 64)
	key := promotionKey("acme-am", digest)
	if key != "promotion.acme-am.sha256=3Abbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" {
		t.Errorf("promotion key %s: the promoter stage writes event.Key(\"promotion\", chain, digest)", key)
	}
	if _, err := kv.Put(ctx, key, &harborflowv1.PromotionState{Chain: "acme-am", Digest: digest, Verdict: "pending"}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	promoterWrites := func() {
		calls++
		if calls == 1 {
			if _, err := kv.Put(ctx, key, &harborflowv1.PromotionState{Chain: "acme-am", Digest: digest, Verdict: "pending", EvaluatedAt: timestamppb.Now(),
				Approvals: []*harborflowv1.Approval{{Stage: "prod", By: "bob", At: timestamppb.Now()}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	recorded, st, _, err := recordApproval(ctx, kv, key, &harborflowv1.Approval{Stage: "prod", By: "alice", At: timestamppb.Now()}, promoterWrites)
	if err != nil || !recorded {
		t.Fatalf("recordApproval: %v, recorded %v", err, recorded)
	}
	if calls != 2 {
		t.Errorf("%d attempts, want 2: one refused by the conflict, one recorded", calls)
	}
	var stored harborflowv1.PromotionState
	if _, err := kv.Get(ctx, key, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.EvaluatedAt == nil || len(stored.Approvals) != 2 || stored.Approvals[0].By != "bob" || stored.Approvals[1].By != "alice" || len(st.Approvals) != 2 {
		t.Errorf("stored after a conflict: %v", &stored)
	}
}
