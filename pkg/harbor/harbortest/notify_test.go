package harbortest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// request is what a test receiver got.
type request struct {
	Header http.Header
	Body   []byte
}

// receiver is a webhook endpoint that answers each request with answer(n), n counting from 1; answer may block on
// the request's context to be slower than the timeout.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, tls bool, answer func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading a delivery: %v", err)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{Header: r.Header.Clone(), Body: body})
		n := len(rc.reqs)
		rc.mu.Unlock()
		if code := answer(n, r); code != 0 {
			w.WriteHeader(code)
		}
	})
	rc.Server = httptest.NewUnstartedServer(h)
	// The handshakes the verifying client refuses are expected, not worth a log line.
	rc.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		rc.StartTLS()
	} else {
		rc.Start()
	}
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// fastOptions are Harbor's rules with test-sized times: a millisecond backoff and a short timeout.
func fastOptions() notifierOptions {
	return notifierOptions{Timeout: 500 * time.Millisecond, Backoff: func(int) time.Duration { return time.Millisecond }}
}

func newTestNotifier(t *testing.T, opts notifierOptions) *notifier {
	t.Helper()
	n := newNotifier(testHost, opts)
	t.Cleanup(n.Close)
	return n
}

// wait waits for the deliveries to end, within a deadline.
func wait(t *testing.T, n *notifier) []Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return n.Deliveries()
}

func pushEvent() Event { return artifactEvent("PUSH_ARTIFACT", "admin", digestImage, "4.2.0.15") }

func TestFailingTwiceThenOKGetsThreeIdenticalBodies(t *testing.T) {
	for _, format := range []string{"", formatDefault, formatCloudEvents} {
		t.Run("format "+format, func(t *testing.T) {
			rc := newReceiver(t, false, func(n int, _ *http.Request) int {
				if n <= 2 {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			})
			n := newTestNotifier(t, fastOptions())
			n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL + "/hook", PayloadFormat: format}}, pushEvent())
			ds := wait(t, n)

			reqs := rc.requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for i, r := range reqs[1:] {
				if !bytes.Equal(r.Body, reqs[0].Body) {
					t.Errorf("attempt %d sent\n%s\nattempt 1 sent\n%s", i+2, r.Body, reqs[0].Body)
				}
			}
			wantCT := contentTypeDefault
			if format == formatCloudEvents {
				wantCT = contentTypeCloudEvents
			}
			if ct := reqs[0].Header.Get("Content-Type"); ct != wantCT {
				t.Errorf("Content-Type %q, want %q", ct, wantCT)
			}
			if len(ds) != 3 {
				t.Fatalf("%d deliveries recorded, want 3", len(ds))
			}
			for i, d := range ds {
				wantStatus := http.StatusInternalServerError
				if i == 2 {
					wantStatus = http.StatusOK
				}
				if d.Attempt != i+1 || d.Status != wantStatus || d.OK() != (i == 2) || d.Err != nil || d.PolicyID != 3 || !bytes.Equal(d.Body, reqs[0].Body) {
					t.Errorf("delivery %d: attempt %d, status %d, ok %v, err %v, policy %d", i, d.Attempt, d.Status, d.OK(), d.Err, d.PolicyID)
				}
			}
		})
	}
}

func TestAReceiverSlowerThanTheTimeoutGetsTheSameBodyAgain(t *testing.T) {
	rc := newReceiver(t, false, func(n int, r *http.Request) int {
		if n == 1 {
			<-r.Context().Done() // answers only after the notifier has given up
			return 0
		}
		return http.StatusOK
	})
	n := newTestNotifier(t, fastOptions())
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL, PayloadFormat: formatCloudEvents}}, pushEvent())
	ds := wait(t, n)

	// The second attempt is answered at once; a third only if a loaded machine took longer than the timeout.
	reqs := rc.requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests, want the first again", len(reqs))
	}
	for _, r := range reqs[1:] {
		if !bytes.Equal(r.Body, reqs[0].Body) {
			t.Fatalf("bodies differ:\n%s", bodies(reqs))
		}
	}
	if len(ds) != len(reqs) || !errors.Is(ds[0].Err, context.DeadlineExceeded) || ds[0].Status != 0 || !ds[len(ds)-1].OK() {
		t.Fatalf("deliveries %+v", ds)
	}
}

func TestEveryAnswerButA2xxIsAFailure(t *testing.T) {
	for _, tc := range []struct {
		code     int
		attempts int
	}{
		{http.StatusOK, 1},
		{http.StatusAccepted, 1},
		{http.StatusNoContent, 1},
		// A 3xx Go does not follow (no Location) stays a 3xx: a failure (§1.2).
		{http.StatusFound, 3},
		{http.StatusNotModified, 3},
		{http.StatusBadRequest, 3},
		{http.StatusUnauthorized, 3},
		{http.StatusNotFound, 3},
		{http.StatusInternalServerError, 3},
		{http.StatusServiceUnavailable, 3},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			rc := newReceiver(t, false, func(int, *http.Request) int { return tc.code })
			n := newTestNotifier(t, fastOptions())
			n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL}}, pushEvent())
			ds := wait(t, n)
			if len(ds) != tc.attempts || len(rc.requests()) != tc.attempts {
				t.Fatalf("%d deliveries, %d requests, want %d", len(ds), len(rc.requests()), tc.attempts)
			}
			for _, d := range ds {
				if d.Status != tc.code || d.OK() != (tc.attempts == 1) {
					t.Errorf("attempt %d: status %d ok %v", d.Attempt, d.Status, d.OK())
				}
			}
		})
	}
}

func TestATransportErrorIsRetriedAndRecorded(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusOK })
	addr := rc.URL
	rc.Close() // nothing listens there now
	n := newTestNotifier(t, fastOptions())
	n.Notify(7, 3, []Target{{Type: "http", Address: addr}}, pushEvent())
	ds := wait(t, n)
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	for _, d := range ds {
		if d.Err == nil || d.Status != 0 || d.OK() {
			t.Errorf("attempt %d: status %d err %v", d.Attempt, d.Status, d.Err)
		}
	}
}

func TestHeadersAreContentTypeAndTheAuthHeaderVerbatim(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusOK })
	n := newTestNotifier(t, fastOptions())
	// Odd spacing inside: Harbor adds and changes nothing (§1.2). (net/http trims the ends of every header
	// value, Harbor's too.)
	auth := "Basic  dXNlcjpwYXNz=="
	n.Notify(7, 3, []Target{
		{Type: "http", Address: rc.URL + "/a", AuthHeader: auth, PayloadFormat: formatDefault},
		{Type: "http", Address: rc.URL + "/b", AuthHeader: "token-without-scheme", PayloadFormat: formatCloudEvents},
		{Type: "http", Address: rc.URL + "/c"},
	}, pushEvent())
	wait(t, n)
	got := map[string]string{}
	for _, r := range rc.requests() {
		vals, ok := r.Header["Authorization"]
		if ok && len(vals) != 1 {
			t.Errorf("Authorization %q", vals)
		}
		key := r.Header.Get("Content-Type") + " " + strings.Join(vals, "|")
		got[key] = ""
		// Only what Harbor's request carries: its two headers and what net/http adds (§1.2).
		for k := range r.Header {
			switch k {
			case "Content-Type", "Authorization", "Content-Length", "User-Agent", "Accept-Encoding":
			default:
				t.Errorf("unexpected header %s: %q", k, r.Header.Values(k))
			}
		}
	}
	for _, want := range []string{"application/json " + auth, "application/cloudevents+json token-without-scheme", "application/json "} {
		if _, ok := got[want]; !ok {
			t.Errorf("no request with Content-Type and Authorization %q; got %q", want, keys(got))
		}
	}
}

func TestCloudEventsIDIsStableAcrossRetriesAndDiffersPerPolicy(t *testing.T) {
	rc := newReceiver(t, false, func(n int, _ *http.Request) int {
		if n%2 == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	n := newTestNotifier(t, fastOptions())
	ev := pushEvent()
	target := []Target{{Type: "http", Address: rc.URL, PayloadFormat: formatCloudEvents}}
	// Two policies of one project get one event: Harbor makes two jobs, each with its own id (§1.5, §7).
	n.Notify(7, 3, target, ev)
	n.Notify(7, 4, target, ev)
	ds := wait(t, n)

	type ce struct {
		ID        string `json:"id"`
		Source    string `json:"source"`
		RequestID string `json:"requestid"`
	}
	ids := map[int64]map[string]bool{}
	for _, d := range ds {
		var c ce
		if err := json.Unmarshal(d.Body, &c); err != nil {
			t.Fatal(err)
		}
		if c.RequestID != "req-1" {
			t.Errorf("requestid %q, want the request's for every policy", c.RequestID)
		}
		if ids[d.PolicyID] == nil {
			ids[d.PolicyID] = map[string]bool{}
		}
		ids[d.PolicyID][c.ID] = true
		if want := "/projects/7/webhook/policies/" + map[int64]string{3: "3", 4: "4"}[d.PolicyID]; c.Source != want {
			t.Errorf("source %q, want %q", c.Source, want)
		}
	}
	if len(ds) < 4 {
		t.Fatalf("%d deliveries, want at least 4 (a failure and a retry per policy)", len(ds))
	}
	if len(ids[3]) != 1 || len(ids[4]) != 1 {
		t.Fatalf("ids per policy %v: want one each, across retries", ids)
	}
	for id := range ids[3] {
		if ids[4][id] {
			t.Errorf("policies 3 and 4 share the id %s", id)
		}
	}
}

func TestTwoTargetsOfOnePolicyGetTheirOwnIDs(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusOK })
	n := newTestNotifier(t, fastOptions())
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL + "/a", PayloadFormat: formatCloudEvents}, {Type: "http", Address: rc.URL + "/b", PayloadFormat: formatCloudEvents}}, pushEvent())
	ds := wait(t, n)
	if len(ds) != 2 || bytes.Equal(ds[0].Body, ds[1].Body) {
		t.Fatalf("two targets got\n%s", bodies(deliveryRequests(ds)))
	}
}

func TestSkipCertVerifyDecidesTLSVerification(t *testing.T) {
	rc := newReceiver(t, true, func(int, *http.Request) int { return http.StatusOK })
	opts := fastOptions()
	opts.Attempts = 1
	n := newTestNotifier(t, opts)
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL + "/verified"}}, pushEvent())
	n.Notify(7, 4, []Target{{Type: "http", Address: rc.URL + "/skipped", SkipCertVerify: true}}, pushEvent())
	ds := wait(t, n)
	if len(ds) != 2 {
		t.Fatalf("%d deliveries", len(ds))
	}
	for _, d := range ds {
		if d.Target.SkipCertVerify != d.OK() {
			t.Errorf("skip_cert_verify %v: status %d err %v", d.Target.SkipCertVerify, d.Status, d.Err)
		}
	}

	// A client that trusts the receiver's CA verifies it.
	opts.Client = rc.Client()
	trusting := newTestNotifier(t, opts)
	trusting.Notify(7, 3, []Target{{Type: "http", Address: rc.URL}}, pushEvent())
	if ds := wait(t, trusting); len(ds) != 1 || !ds[0].OK() {
		t.Fatalf("with the test CA: %+v", ds)
	}
}

func TestTargetsThatCannotBeSentAreRecordedOrSkipped(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusOK })
	n := newTestNotifier(t, fastOptions())
	n.Notify(7, 3, []Target{
		{Type: "slack", Address: rc.URL},
		{Type: "http", Address: rc.URL, PayloadFormat: "Slack"},
	}, pushEvent())
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL}}, Event{Type: "UPLOAD_CHART"})
	ds := wait(t, n)
	if len(rc.requests()) != 0 {
		t.Errorf("%d requests sent", len(rc.requests()))
	}
	if len(ds) != 2 {
		t.Fatalf("deliveries %+v", ds)
	}
	for _, d := range ds {
		if d.Attempt != 0 || d.Err == nil || d.Body != nil {
			t.Errorf("delivery %+v", d)
		}
	}
}

func TestWaitCoversPendingRetriesAndCloseDropsThem(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusInternalServerError })
	opts := fastOptions()
	opts.Backoff = func(int) time.Duration { return time.Hour }
	n := newNotifier(testHost, opts)
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL}}, pushEvent())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a retry pending an hour away: %v", err)
	}
	closed := make(chan struct{})
	go func() { n.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not drop the pending retry")
	}
	if ds := n.Deliveries(); len(ds) != 1 || ds[0].Status != http.StatusInternalServerError {
		t.Fatalf("deliveries %+v", ds)
	}
	if err := n.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL}}, pushEvent())
	if err := n.Wait(context.Background()); err != nil || len(n.Deliveries()) != 1 || len(rc.requests()) != 1 {
		t.Fatalf("Notify after Close sent: %v %d", err, len(rc.requests()))
	}
	n.Close() // a second Close is harmless
}

func TestWaitOnANotifierThatNeverSentReturnsAtOnce(t *testing.T) {
	n := newTestNotifier(t, notifierOptions{})
	if err := n.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentNotifiesAreAllDelivered(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	rc := newReceiver(t, false, func(_ int, r *http.Request) int {
		// The first delivery of every body fails; the retry succeeds.
		mu.Lock()
		defer mu.Unlock()
		key := r.URL.Path
		if seen[key] {
			return http.StatusOK
		}
		seen[key] = true
		return http.StatusInternalServerError
	})
	n := newTestNotifier(t, fastOptions())
	const events = 40
	var wg sync.WaitGroup
	for i := range events {
		wg.Go(func() {
			ev := pushEvent()
			ev.Tag = "t" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL + "/" + ev.Tag, PayloadFormat: []string{formatDefault, formatCloudEvents}[i%2]}}, ev)
		})
	}
	// Waiting while Notify still runs may return before the last ones start; wait for the notifies first.
	wg.Wait()
	ds := wait(t, n)
	delivered := map[string]bool{}
	for _, d := range ds {
		if d.OK() {
			delivered[d.Event.Tag] = true
		}
	}
	if len(delivered) != events || len(ds) != 2*events {
		t.Fatalf("%d events delivered of %d (%d attempts)", len(delivered), events, len(ds))
	}
}

func TestHarborBackoffIsGocraftWorks(t *testing.T) {
	// §1.2: 16–74 s before the 2nd attempt, 31–118 s before the 3rd.
	for _, tc := range []struct {
		failures int
		min, max time.Duration
	}{{1, 16 * time.Second, 74 * time.Second}, {2, 31 * time.Second, 118 * time.Second}} {
		seen := map[time.Duration]bool{}
		for range 2000 {
			d := harborBackoff(tc.failures)
			// fails^4 + 15 + r·(fails+1) with r in 0..29.
			f := time.Duration(tc.failures)
			r := d - (f*f*f*f+15)*time.Second
			if d < tc.min || d > tc.max || r%((f+1)*time.Second) != 0 {
				t.Fatalf("backoff after %d failures: %v", tc.failures, d)
			}
			seen[d] = true
		}
		if len(seen) != 30 {
			t.Errorf("after %d failures: %d distinct delays, want 30", tc.failures, len(seen))
		}
	}
	n := newNotifier(testHost, notifierOptions{})
	defer n.Close()
	if n.opts.Timeout != 3*time.Second || n.opts.Attempts != 3 || n.opts.Backoff == nil || n.opts.NewID == nil {
		t.Errorf("defaults %+v", n.opts)
	}
}

func TestTheExportedNotifierIsTheSame(t *testing.T) {
	rc := newReceiver(t, false, func(int, *http.Request) int { return http.StatusOK })
	n := NewNotifier(testHost, NotifierOptions{Timeout: time.Second, NewID: func() string { return "fixed-0" }})
	defer n.Close()
	n.Notify(7, 3, []Target{{Type: "http", Address: rc.URL, PayloadFormat: formatCloudEvents}}, pushEvent())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(goldens[0].ce, goldens[0].id, "fixed-0", 1)
	if ds := n.Deliveries(); len(ds) != 1 || string(ds[0].Body) != want || !ds[0].OK() {
		t.Fatalf("deliveries %+v", ds)
	}
}

func deliveryRequests(ds []Delivery) []request {
	out := make([]request, len(ds))
	for i, d := range ds {
		out[i] = request{Header: d.Header, Body: d.Body}
	}
	return out
}

func bodies(reqs []request) string {
	var b strings.Builder
	for _, r := range reqs {
		b.Write(r.Body)
		b.WriteByte('\n')
	}
	return b.String()
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
