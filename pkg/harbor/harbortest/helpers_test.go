package harbortest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

const (
	admin = harbortest.DefaultAdmin
	pass  = harbortest.DefaultPassword
)

// recorder keeps the events the stand-in hands the notifier.
type recorder struct {
	mu     sync.Mutex
	events []harbortest.Event
	more   chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) hook(_ int64, ev harbortest.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// wait returns the events once there are n, failing the test after a deadline.
func (r *recorder) wait(t *testing.T, n int) []harbortest.Event {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if len(r.events) >= n {
			out := append([]harbortest.Event(nil), r.events...)
			r.mu.Unlock()
			return out
		}
		got := len(r.events)
		r.mu.Unlock()
		select {
		case <-r.more:
		case <-deadline.C:
			t.Fatalf("waited for %d events, have %d", n, got)
		}
	}
}

// count is how many events there are now.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// standIn starts a stand-in whose events r records.
func standIn(t *testing.T, r *recorder, opts ...harbortest.Option) *harbortest.Server {
	t.Helper()
	if r != nil {
		opts = append(opts, harbortest.WithEventHook(r.hook))
	}
	return harbortest.New(t, opts...)
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

// call sends an API request (path under /api/v2.0) with basic auth when user is not empty.
func call(t *testing.T, s *harbortest.Server, method, path, user, password string, body any, header ...string) answer {
	t.Helper()
	return raw(t, s, method, "/api/v2.0"+path, user, password, body, header...)
}

// raw sends a request to any path of the stand-in.
func raw(t *testing.T, s *harbortest.Server, method, path, user, password string, body any, header ...string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails the test unless the answer has status.
func want(t *testing.T, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
}

// wantError fails the test unless the answer is Harbor's error body with status and code.
func wantError(t *testing.T, a answer, status int, code string) string {
	t.Helper()
	want(t, a, status)
	if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("error Content-Type %q", ct)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	a.json(t, &e)
	if len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Fatalf("errors %s, want code %s", a.body, code)
	}
	return e.Errors[0].Message
}

// client is a regclient that reaches the source registry and the stand-in (as user, or anonymous).
func client(s *harbortest.Server, src *registrytest.Registry, user, password string) *regclient.RegClient {
	hosts := []rcconfig.Host{{Name: s.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: password}}
	if src != nil {
		hosts = append(hosts, rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled})
	}
	return regclient.New(regclient.WithConfigHost(hosts...))
}

// push copies srcRef of the source registry to dstRef ("project/repo:tag") of the stand-in as the
// administrator, as any client pushes: each manifest of an index by digest, then the index by tag.
func push(t *testing.T, s *harbortest.Server, src *registrytest.Registry, srcRef, dstRef string) {
	t.Helper()
	rc := client(s, src, admin, pass)
	from, err := ref.New(src.Host + "/" + srcRef)
	if err != nil {
		t.Fatal(err)
	}
	to, err := ref.New(s.Host() + "/" + dstRef)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rc.ImageCopy(ctx, from, to); err != nil {
		t.Fatalf("pushing %s to %s: %v", srcRef, dstRef, err)
	}
}

// subscribe creates a webhook policy of project for events, delivering to a receiver that is not there.
func subscribe(t *testing.T, s *harbortest.Server, project string, events ...string) {
	t.Helper()
	a := call(t, s, http.MethodPost, "/projects/"+project+"/webhook/policies", admin, pass, map[string]any{
		"name": "test-" + project, "enabled": true, "event_types": events,
		"targets": []map[string]any{{"type": "http", "address": "http://127.0.0.1:1/hook"}},
	}, "X-Is-Resource-Name", "true")
	want(t, a, http.StatusCreated)
}

// ofType keeps the events of one type.
func ofType(evs []harbortest.Event, typ string) []harbortest.Event {
	var out []harbortest.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func twoPlatforms() registrytest.Index {
	return registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"update_level": "15"}},
		{Platform: "linux/arm64", Labels: map[string]string{"update_level": "15"}},
	}}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
