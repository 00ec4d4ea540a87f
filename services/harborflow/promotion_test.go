package harborflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
)

// promotionEnv is an embedded NATS with its buckets, a config naming it, and the promotions bucket to write
// PromotionStates to as the promoter stage does.
type promotionEnv struct {
	cfg string
	kv  *bus.KV
	ctx context.Context
	url string
}

func newPromotionEnv(t *testing.T) *promotionEnv {
	t.Helper()
	srv := bustest.Start(t)
	path := filepath.Join(t.TempDir(), "harborflow.yaml")
	if err := os.WriteFile(path, []byte("nats:\n  url: "+srv.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	kv, err := srv.Bus.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		t.Fatal(err)
	}
	return &promotionEnv{cfg: path, kv: kv, ctx: ctx, url: srv.URL()}
}

// put writes st under the key the promoter stage uses.
func (e *promotionEnv) put(t *testing.T, st *harborflowv1.PromotionState) {
	t.Helper()
	if _, err := e.kv.Put(e.ctx, event.Key("promotion", st.Chain, st.Digest), st); err != nil {
		t.Fatal(err)
	}
}

func (e *promotionEnv) get(t *testing.T, chain, digest string) *harborflowv1.PromotionState {
	t.Helper()
	st := &harborflowv1.PromotionState{}
	if _, err := e.kv.Get(e.ctx, event.Key("promotion", chain, digest), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func ts(sec int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(sec, 0)) }

// pendingApproval is 4.2.0.16.3 in staging, every gate towards prod passed but the approval.
func pendingApproval() *harborflowv1.PromotionState {
	return &harborflowv1.PromotionState{
		Chain: "acme-am", Digest: digestB, Tags: []string{"4.2.0.16.3"},
		Reached: []*harborflowv1.StageEntry{
			{Stage: "dev", Repository: "harbor.acme.example/wso2-dev/acme-am", Entered: ts(2000), Tags: []string{"4.2.0.16.3", "latest"}},
			{Stage: "staging", Repository: "harbor.acme.example/wso2-staging/acme-am", Entered: ts(3000), Tags: []string{"4.2.0.16.3", "latest"}},
		},
		Gates: []*harborflowv1.Gate{
			{Name: "max_severity", Passed: true, Verdict: "passed", Reason: "every platform scanned, highest Low"},
			{Name: "approval", Verdict: "pending", Reason: "no approval for prod",
				Unblock: "harborflow approve acme-am " + digestB + " --stage prod --by NAME"},
		},
		Verdict: "pending", EvaluatedAt: ts(3100), NextEvaluation: ts(3700), ScanRequestedAt: ts(3050),
	}
}

// older is 4.2.0.15.2: in dev, where latest was before 4.2.0.16.3 came, and blocked by a finding.
func older() *harborflowv1.PromotionState {
	return &harborflowv1.PromotionState{
		Chain: "acme-am", Digest: digestA, Tags: []string{"4.2.0.15.2"},
		Reached: []*harborflowv1.StageEntry{
			{Stage: "dev", Repository: "harbor.acme.example/wso2-dev/acme-am", Entered: ts(1000), Tags: []string{"4.2.0.15.2", "latest"}},
		},
		Gates:   []*harborflowv1.Gate{{Name: "max_severity", Verdict: "blocked", Reason: "linux/arm64: High found", Unblock: "fix the finding and rebuild"}},
		Verdict: "blocked", EvaluatedAt: ts(1100),
	}
}

func TestApprove(t *testing.T) {
	e := newPromotionEnv(t)
	e.put(t, older())
	e.put(t, pendingApproval())

	// By tag: latest is on both digests; the one that entered a stage with it last is 4.2.0.16.3.
	out, err := runCLI(t, "--config", e.cfg, "approve", "acme-am", "latest", "--stage", "prod", "--by", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "recorded: alice approved acme-am "+digestB+" for stage prod") || !strings.Contains(out, "asked the promoter to evaluate it now") ||
		strings.Contains(out, "note:") {
		t.Errorf("approve output:\n%s", out)
	}
	st := e.get(t, "acme-am", digestB)
	if len(st.Approvals) != 1 || st.Approvals[0].Stage != "prod" || st.Approvals[0].By != "alice" || st.Approvals[0].At == nil {
		t.Fatalf("approvals after approve: %v", st.Approvals)
	}
	if st.Verdict != "pending" || len(st.Reached) != 2 || len(st.Gates) != 2 {
		t.Errorf("approve changed more than the approvals: %v", st)
	}
	if len(e.get(t, "acme-am", digestA).Approvals) != 0 {
		t.Error("the older digest that also had latest was approved")
	}
	// The promoter is asked to evaluate it now.
	task := readMessages[*harborflowv1.PromotionTask](t, e.url, event.TaskSubject(event.StagePromoter), 1, true)[0]
	if task.GetChain() != "acme-am" || task.GetDigest() != digestB || task.GetReason() != "approved by alice" {
		t.Errorf("task.promoter: %v", task)
	}

	// The same person again, by digest: recorded once.
	out, err = runCLI(t, "--config", e.cfg, "approve", "acme-am", digestB, "--stage", "prod", "--by", "alice")
	if err != nil || !strings.Contains(out, "nothing new recorded") {
		t.Errorf("second approve: %v\n%s", err, out)
	}
	if n := len(e.get(t, "acme-am", digestB).Approvals); n != 1 {
		t.Errorf("%d approvals after approving twice, want 1", n)
	}

	// By the unique tag of the older digest, for a stage the state does not name: recorded, with a note.
	out, err = runCLI(t, "--config", e.cfg, "approve", "acme-am", "4.2.0.15.2", "--stage", "qa", "--by", "bob")
	if err != nil || !strings.Contains(out, "recorded: bob approved acme-am "+digestA+" for stage qa") || !strings.Contains(out, "note: qa is not a stage") {
		t.Errorf("approve of a stage the state does not name: %v\n%s", err, out)
	}
	// A stage reached already: nothing to approve.
	out, err = runCLI(t, "--config", e.cfg, "approve", "acme-am", digestB, "--stage", "staging", "--by", "bob")
	if err != nil || !strings.Contains(out, "already reached staging") {
		t.Errorf("approve of a reached stage: %v\n%s", err, out)
	}
	if n := len(e.get(t, "acme-am", digestB).Approvals); n != 1 {
		t.Errorf("%d approvals after approving a reached stage, want 1", n)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"acme-am", "latest", "--stage", "prod", "--by", " "}, "--by is required"},
		{[]string{"acme-am", "latest", "--stage", "prod"}, `"by" not set`},
		{[]string{"acme-am", "latest", "--stage", "Prod X", "--by", "alice"}, "is not a stage name"},
		{[]string{"acme-is", "latest", "--stage", "prod", "--by", "alice"}, "no image has entered promotion chain acme-is; chains with images: acme-am"},
		{[]string{"acme-am", "4.2.0.99", "--stage", "prod", "--by", "alice"},
			"no image of promotion chain acme-am has the tag 4.2.0.99; its tags: 4.2.0.15.2, 4.2.0.16.3, latest"},
		{[]string{"acme-am", "sha256:" + strings.Repeat("c", 64), "--stage", "prod", "--by", "alice"},
			"has not entered promotion chain acme-am; its digests: " + digestA + ", " + digestB},
	} {
		_, err := runCLI(t, append([]string{"--config", e.cfg, "approve"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("approve %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestApproveConcurrently approves one image by several people at once, while the promoter writes a new
// evaluation: every write is kept, each approval lost to a compare-and-set conflict is retried.
func TestApproveConcurrently(t *testing.T) {
	e := newPromotionEnv(t)
	e.put(t, pendingApproval())
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runCLI(t, "--config", e.cfg, "approve", "acme-am", "4.2.0.16.3", "--stage", "prod", "--by", fmt.Sprintf("person-%d", i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("approve by person-%d: %v", i, err)
		}
	}
	st := e.get(t, "acme-am", digestB)
	seen := map[string]bool{}
	for _, a := range st.Approvals {
		seen[a.By] = true
	}
	if len(st.Approvals) != n || len(seen) != n {
		t.Errorf("approvals after %d concurrent approves: %v", n, st.Approvals)
	}
}

func TestPromotionShow(t *testing.T) {
	e := newPromotionEnv(t)
	st := pendingApproval()
	st.Approvals = []*harborflowv1.Approval{{Stage: "staging", By: "carol", At: ts(2900)}}
	e.put(t, st)
	e.put(t, older())

	out, err := runCLI(t, "--config", e.cfg, "promotion", "show", "acme-am", "4.2.0.16.3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"chain acme-am, digest " + digestB,
		"tags: 4.2.0.16.3",
		"staging  harbor.acme.example/wso2-staging/acme-am  1970-01-01T00:50:00Z  4.2.0.16.3,latest",
		"last evaluation towards prod: pending at 1970-01-01T00:51:40Z",
		"max_severity  passed   every platform scanned, highest Low  -",
		"approval      pending  no approval for prod                 harborflow approve acme-am " + digestB + " --stage prod --by NAME",
		"  staging by carol at 1970-01-01T00:48:20Z",
		"scan requested at: 1970-01-01T00:50:50Z",
		"next evaluation: 1970-01-01T01:01:40Z",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("promotion show lacks %q:\n%s", want, out)
		}
	}

	out, err = runCLI(t, "--config", e.cfg, "promotion", "show", "acme-am", digestA)
	if err != nil || !strings.Contains(out, "max_severity  blocked  linux/arm64: High found  fix the finding and rebuild") ||
		!strings.Contains(out, "approvals: none") || !strings.Contains(out, "next evaluation: -") {
		t.Errorf("promotion show of a blocked image: %v\n%s", err, out)
	}

	out, err = runCLI(t, "--config", e.cfg, "promotion", "show", "acme-am", "latest", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Chain, Digest, Verdict string
		Reached                []struct{ Stage, Repository, Entered string }
		Gates                  []struct{ Name, Verdict, Reason, Unblock string }
		Approvals              []struct{ Stage, By, At string }
		NextEvaluation         string
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("promotion show --json: %v\n%s", err, out)
	}
	if got.Digest != digestB || got.Verdict != "pending" || len(got.Reached) != 2 || got.Reached[1].Entered != "1970-01-01T00:50:00Z" ||
		len(got.Gates) != 2 || got.Gates[1].Unblock == "" || len(got.Approvals) != 1 || got.Approvals[0].By != "carol" ||
		got.NextEvaluation != "1970-01-01T01:01:40Z" {
		t.Errorf("promotion show --json: %+v", got)
	}

	if _, err := runCLI(t, "--config", e.cfg, "promotion", "show", "nope", "latest"); err == nil || !strings.Contains(err.Error(), "no image has entered promotion chain nope") {
		t.Errorf("show of an unknown chain: %v", err)
	}
}
