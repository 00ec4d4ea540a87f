package harborflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
)

const (
	dlqSubject = "registry.harbor.push"
	dlqBody    = `{"id":"ev-1","repository":"wso2-apim/am","tag":"4.2.0.1"}`
	dlqReason  = "reference wso2-apim/am:4.2.0.1 cannot exist"
)

// dlqEnv is an embedded NATS, a config naming it, and a message the inspector stage gave up on.
type dlqEnv struct {
	srv *bustest.Server
	cfg string
	ctx context.Context
	// orig is the REGISTRY sequence of the message that was dead-lettered, dead its DLQ sequence.
	orig, dead uint64
}

// newDLQEnv publishes dlqBody as ev-1 and has a real consumer of stage inspector give up on it (a permanent
// error), so that the DLQ holds what a stage writes there.
func newDLQEnv(t *testing.T) *dlqEnv {
	t.Helper()
	srv := bustest.Start(t)
	path := filepath.Join(t.TempDir(), "harborflow.yaml")
	if err := os.WriteFile(path, []byte("nats:\n  url: "+srv.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	e := &dlqEnv{srv: srv, cfg: path, ctx: ctx}

	ack, err := srv.Bus.Publish(ctx, &bus.Message{Subject: dlqSubject, ID: "ev-1",
		Header: nats.Header{event.HeaderCorrelationID: {"corr-1"}}, Data: []byte(dlqBody)})
	if err != nil {
		t.Fatal(err)
	}
	e.orig = ack.Sequence
	c, err := srv.Bus.Consume(ctx, bus.ConsumerConfig{Stage: event.StageInspector, Subjects: []string{"registry.*.push"}},
		func(context.Context, *bus.Message) ([]*bus.Message, error) {
			return nil, bus.Permanent(errors.New(dlqReason))
		})
	if err != nil {
		t.Fatal(err)
	}
	// The dead letter is stored before the input is terminated, so a settled input means a stored dead letter.
	srv.WaitSettled(event.StreamRegistry, event.StageInspector, e.orig)
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	dead := srv.Messages(event.StreamDLQ, "dlq.>")
	if len(dead) != 1 {
		t.Fatalf("DLQ holds %d messages, want the one dead letter", len(dead))
	}
	e.dead = dead[0].Sequence
	return e
}

func (e *dlqEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCLI(t, append([]string{"--config", e.cfg, "dlq"}, args...)...)
}

// replayID is the id a replay of the DLQ message at seq, of the original id, is published under.
func replayID(orig string, seq uint64) string { return event.ID(orig, "replay", fmt.Sprint(seq)) }

func TestDLQListShowsADeadLetterWithItsReason(t *testing.T) {
	e := newDLQEnv(t)
	out, err := e.run(t, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("dlq list printed\n%s", out)
	}
	for _, want := range []string{fmt.Sprint(e.dead), "inspector", dlqSubject, " 1 ", dlqReason} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("dlq list line %q without %q", lines[1], want)
		}
	}

	out, err = e.run(t, "list", "--stage", "inspector", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Seq                    uint64
		Stage, Subject, Reason string
		Time                   time.Time
		Deliveries             uint64
		ID                     string
		Data                   json.RawMessage
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("dlq list --json printed %q: %v", out, err)
	}
	if d.Seq != e.dead || d.Stage != "inspector" || d.Subject != dlqSubject || d.Reason != dlqReason || d.Time.IsZero() ||
		d.Deliveries != 1 || d.ID != "ev-1" || string(d.Data) != dlqBody {
		t.Errorf("dlq list --json printed %s", out)
	}

	if out, err := e.run(t, "list", "--stage", "rebuilder"); err != nil || out != "no dead letters on dlq.rebuilder\n" {
		t.Errorf("dlq list --stage rebuilder: %v %q", err, out)
	}
	if out, err := e.run(t, "list", "--stage", "rebuilder", "--json"); err != nil || out != "" {
		t.Errorf("dlq list --stage rebuilder --json: %v %q", err, out)
	}
	if _, err := e.run(t, "list", "--stage", "in.*"); err == nil || !strings.Contains(err.Error(), `--stage "in.*"`) {
		t.Errorf("dlq list --stage in.*: %v", err)
	}
}

func TestDLQReplayPutsTheMessageBackOnItsSubject(t *testing.T) {
	e := newDLQEnv(t)
	id := replayID("ev-1", e.dead)
	out, err := e.run(t, "replay", "--stage", "inspector", "--seq", fmt.Sprint(e.dead))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := fmt.Sprintf("replayed DLQ %d (dlq.inspector) to %s, id %s: stored as REGISTRY %d; removed from the DLQ\n", e.dead, dlqSubject, id, e.orig+1)
	if out != want {
		t.Errorf("dlq replay printed\n%s\nwant\n%s", out, want)
	}

	msgs := e.srv.Messages(event.StreamRegistry, dlqSubject)
	if len(msgs) != 2 {
		t.Fatalf("%s holds %d messages, want the original and its replay", dlqSubject, len(msgs))
	}
	r := msgs[1]
	if r.ID != id || r.ID == "ev-1" || string(r.Data) != dlqBody || r.CorrelationID() != "corr-1" ||
		r.Header.Get(event.HeaderContentType) != event.ContentTypeJSON {
		t.Errorf("replay %+v, want id %s, body %s, correlation id corr-1", r, id, dlqBody)
	}
	for k := range r.Header {
		if strings.HasPrefix(k, event.HeaderDLQPrefix) {
			t.Errorf("replay kept the dead letter's header %s", k)
		}
	}
	if dead := e.srv.Messages(event.StreamDLQ, "dlq.>"); len(dead) != 0 {
		t.Errorf("DLQ still holds %d messages after the replay", len(dead))
	}

	// The dead letter is gone: replaying it again is an error, and --all finds nothing.
	if _, err := e.run(t, "replay", "--stage", "inspector", "--seq", fmt.Sprint(e.dead)); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("the DLQ holds no message %d", e.dead)) {
		t.Errorf("second replay of DLQ %d: %v", e.dead, err)
	}
	if out, err := e.run(t, "replay", "--stage", "inspector", "--all"); err != nil || out != "no dead letters on dlq.inspector\n" {
		t.Errorf("replay --all of an empty DLQ: %v %q", err, out)
	}
}

// TestDLQReplayTwiceIsStoredOnce: a replay that was stored but could not remove its dead letter (the process
// died in between) is not stored again by the next replay, which removes the dead letter.
func TestDLQReplayTwiceIsStoredOnce(t *testing.T) {
	e := newDLQEnv(t)
	id := replayID("ev-1", e.dead)
	ack, err := e.srv.Bus.Publish(e.ctx, &bus.Message{Subject: dlqSubject, ID: id, Header: nats.Header{}, Data: []byte(dlqBody)})
	if err != nil {
		t.Fatal(err)
	}

	out, err := e.run(t, "replay", "--stage", "inspector", "--all")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := fmt.Sprintf("already stored as REGISTRY %d by an earlier replay; removed from the DLQ", ack.Sequence); !strings.Contains(out, want) {
		t.Errorf("dlq replay printed %q, want %q", out, want)
	}
	msgs := e.srv.Messages(event.StreamRegistry, dlqSubject)
	if len(msgs) != 2 || msgs[1].ID != id {
		t.Errorf("%s holds %d messages, want the original and one replay", dlqSubject, len(msgs))
	}
	if dead := e.srv.Messages(event.StreamDLQ, "dlq.>"); len(dead) != 0 {
		t.Errorf("DLQ still holds %d messages after the replay", len(dead))
	}
}

func TestDLQReplayDryRunChangesNothing(t *testing.T) {
	e := newDLQEnv(t)
	for _, args := range [][]string{{"--seq", fmt.Sprint(e.dead)}, {"--all"}} {
		out, err := e.run(t, append([]string{"replay", "--stage", "inspector", "--dry-run"}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		want := fmt.Sprintf("would replay DLQ %d (dlq.inspector) to %s (stream REGISTRY) as id %s, then remove it from the DLQ\n",
			e.dead, dlqSubject, replayID("ev-1", e.dead))
		if out != want {
			t.Errorf("%v printed\n%s\nwant\n%s", args, out, want)
		}
	}
	if msgs := e.srv.Messages(event.StreamRegistry, "registry.>"); len(msgs) != 1 {
		t.Errorf("REGISTRY holds %d messages after a dry run, want 1", len(msgs))
	}
	if dead := e.srv.Messages(event.StreamDLQ, "dlq.>"); len(dead) != 1 || dead[0].Sequence != e.dead {
		t.Errorf("DLQ holds %d messages after a dry run, want the dead letter", len(dead))
	}
}

// TestDLQReplayRefusesWhatHasNoSubject: the receiver's dead letters (an HTTP path, no subject) and dead letters
// whose subject is in no stream are refused and left in the DLQ, and --all replays the others.
func TestDLQReplayRefusesWhatHasNoSubject(t *testing.T) {
	e := newDLQEnv(t)
	publish := func(m *bus.Message) uint64 {
		t.Helper()
		ack, err := e.srv.Bus.Publish(e.ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	receiver := publish(bus.DeadLetter(event.StageReceiver, "no repository", &bus.Message{Subject: "/webhooks/distribution/reg", Data: []byte(`{}`)}))
	nowhere := publish(bus.DeadLetter(event.StageInspector, "odd", &bus.Message{Subject: "nowhere.x", ID: "ev-2", Data: []byte(`{}`)}))

	for _, args := range [][]string{
		{"--stage", "receiver", "--all"},
		{"--stage", "receiver", "--seq", fmt.Sprint(receiver)},
	} {
		if _, err := e.run(t, append([]string{"replay"}, args...)...); err == nil ||
			!strings.Contains(err.Error(), "the receiver's dead letters (dlq.receiver) cannot be replayed") {
			t.Errorf("replay %v: %v, want a refusal", args, err)
		}
	}
	if _, err := e.run(t, "replay", "--stage", "inspector", "--seq", fmt.Sprint(nowhere)); err == nil ||
		err.Error() != fmt.Sprintf(`DLQ message %d cannot be replayed: its original subject "nowhere.x" is in no stream, so nothing would store it`, nowhere) {
		t.Errorf("replay of a subject in no stream: %v", err)
	}
	if _, err := e.run(t, "replay", "--stage", "inspector", "--seq", fmt.Sprint(receiver)); err == nil ||
		err.Error() != fmt.Sprintf("DLQ message %d is on dlq.receiver, not dlq.inspector", receiver) {
		t.Errorf("replay of another stage's dead letter: %v", err)
	}

	// --all replays what it can and names what it refused.
	out, err := e.run(t, "replay", "--stage", "inspector", "--all")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 dead letters not replayed") || !strings.Contains(err.Error(), "nowhere.x") {
		t.Errorf("replay --all: %v", err)
	}
	if !strings.Contains(out, fmt.Sprintf("replayed DLQ %d (dlq.inspector)", e.dead)) {
		t.Errorf("replay --all printed %q", out)
	}
	var left []uint64
	for _, m := range e.srv.Messages(event.StreamDLQ, "dlq.>") {
		left = append(left, m.Sequence)
	}
	if fmt.Sprint(left) != fmt.Sprint([]uint64{receiver, nowhere}) {
		t.Errorf("DLQ holds %v, want the refused %d and %d", left, receiver, nowhere)
	}
}

func TestDLQReplayFlags(t *testing.T) {
	e := newDLQEnv(t)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--all"}, `required flag(s) "stage" not set`},
		{[]string{"--stage", "inspector"}, "at least one of the flags in the group [seq all] is required"},
		{[]string{"--stage", "inspector", "--all", "--seq", "1"}, "if any flags in the group [seq all] are set none of the others can be"},
		{[]string{"--stage", "inspector", "--seq", "0"}, "--seq: DLQ sequences start at 1"},
	} {
		if _, err := e.run(t, append([]string{"replay"}, tc.args...)...); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("replay %v: %v, want %s", tc.args, err, tc.err)
		}
	}
}

// TestDLQDropRemovesOneDeadLetter: drop removes the dead letter it names, and only it; a second drop of it,
// and a drop naming another stage's dead letter, are refused.
func TestDLQDropRemovesOneDeadLetter(t *testing.T) {
	e := newDLQEnv(t)
	ack, err := e.srv.Bus.Publish(e.ctx, bus.DeadLetter(event.StageReceiver, "no repository",
		&bus.Message{Subject: "/webhooks/distribution/reg", Data: []byte(`{}`)}))
	if err != nil {
		t.Fatal(err)
	}
	receiver := ack.Sequence
	if _, err := e.run(t, "drop", "--stage", "inspector", "--seq", fmt.Sprint(receiver)); err == nil ||
		!strings.Contains(err.Error(), "is on dlq.receiver, not dlq.inspector") {
		t.Errorf("drop of another stage's dead letter: %v", err)
	}
	out, err := e.run(t, "drop", "--stage", "receiver", "--seq", fmt.Sprint(receiver))
	if err != nil || !strings.Contains(out, fmt.Sprintf("dropped DLQ message %d of receiver (from /webhooks/distribution/reg: no repository)", receiver)) {
		t.Fatalf("drop: %v\n%s", err, out)
	}
	if left := e.srv.Messages(event.StreamDLQ, "dlq.>"); len(left) != 1 || left[0].Sequence != e.dead {
		t.Errorf("DLQ holds %v, want only the inspector's dead letter %d", left, e.dead)
	}
	if _, err := e.run(t, "drop", "--stage", "receiver", "--seq", fmt.Sprint(receiver)); err == nil ||
		!strings.Contains(err.Error(), "the DLQ holds no message") {
		t.Errorf("a second drop: %v", err)
	}
}
