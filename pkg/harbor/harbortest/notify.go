package harbortest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Event is one event the stand-in notifies webhook policies of (HARBOR.md §1.3, §1.4): what its API, registry
// front and scanner record, and what the payload builders turn into Default and CloudEvents bodies. The builders
// follow HARBOR.md on their own; they share no type or code with the receiver's parser, so each checks the other.
type Event struct {
	// Type is Harbor's event type: PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT, SCANNING_COMPLETED,
	// SCANNING_FAILED or SCANNING_STOPPED.
	Type string
	// OccurAt is when it happened; the wire has whole seconds.
	OccurAt time.Time
	// Operator is the user of the request ("" when anonymous).
	Operator string
	// RequestID is the X-Request-Id of the request that caused the event.
	RequestID string
	// ProjectID, Project and Public are the project's id, name (the namespace) and visibility (repo_type).
	ProjectID int64
	Project   string
	Public    bool
	// Repository is the full repository name, project/repo.
	Repository string
	// RepoCreated is the repository's creation time; zero omits date_created (scan events).
	RepoCreated time.Time
	// Digest is the artifact's digest.
	Digest string
	// Tag is resources[0].tag as Harbor sends it: the tag, the digest for a push or pull by digest, "" to omit
	// the key (an index child's scan event).
	Tag string
	// ScanOverview is resources[0].scan_overview of a scan event, keyed by report MIME type.
	ScanOverview map[string]any
	// ScanType is event_data.scan.scan_type of a scan event ("vulnerability").
	ScanType string
}

// Target is where a webhook policy delivers (HARBOR.md §1.1, EventTarget).
type Target struct {
	Type           string `json:"type"`
	Address        string `json:"address"`
	AuthHeader     string `json:"auth_header,omitempty"`
	SkipCertVerify bool   `json:"skip_cert_verify"`
	PayloadFormat  string `json:"payload_format,omitempty"`
}

// Delivery is one delivery attempt, recorded for tests.
type Delivery struct {
	PolicyID int64
	Event    Event
	Target   Target
	// Attempt counts from 1; Harbor makes at most 3 (HARBOR.md §1.2). 0 means no body could be built for the
	// target (Err says why) and nothing was sent.
	Attempt int
	Body    []byte
	Header  http.Header
	// Status is the receiver's answer (0 when the request failed: Err).
	Status int
	Err    error
	At     time.Time
	// Reply is the start of the receiver's answer body (up to 64 KiB), for tests.
	Reply []byte
}

// OK reports whether the attempt succeeded: Harbor counts 2xx only (HARBOR.md §1.2).
func (d Delivery) OK() bool { return d.Err == nil && d.Status >= 200 && d.Status <= 299 }

// notifierOptions shape delivery; zero values take Harbor's (HARBOR.md §1.2).
type notifierOptions struct {
	// Timeout bounds one attempt (3 s).
	Timeout time.Duration
	// Attempts is the number of attempts in all (3).
	Attempts int
	// Backoff is the wait before attempt n+1 after n failures (Harbor: 16–118 s; tests use milliseconds).
	Backoff func(failures int) time.Duration
	// Client sends the requests (a client with the system roots; SkipCertVerify targets get an insecure one).
	Client *http.Client
	// NewID gives the CloudEvents id of each (policy, target) delivery: a fresh UUIDv4 when nil.
	NewID func() string
}

// Harbor's delivery defaults (HARBOR.md §1.2).
const (
	defaultTimeout  = 3 * time.Second
	defaultAttempts = 3
	// replyLimit caps the part of an answer body a Delivery keeps.
	replyLimit = 64 << 10
)

// harborBackoff is gocraft/work's retry delay, which Harbor's jobservice uses for webhook jobs:
// fails^4 + 15 + rand(0..29)·(fails+1) seconds (HARBOR.md §1.2), 16–74 s before the 2nd attempt, 31–118 s before
// the 3rd.
func harborBackoff(failures int) time.Duration {
	f := int64(failures)
	return time.Duration(f*f*f*f+15+rand.Int64N(30)*(f+1)) * time.Second
}

// notifier builds and delivers the webhook bodies of events, asynchronously, and records every attempt.
//
// Each (policy, target) delivery is its own job, as a jobservice WEBHOOK job is in Harbor: the body is rendered
// once when the event is notified and every attempt sends those bytes, so retries are byte-identical and a
// CloudEvents id is the same across them (§1.2). Jobs run concurrently; their order is not promised (§7).
type notifier struct {
	extHost  string
	opts     notifierOptions
	secure   *http.Client
	insecure *http.Client
	stop     chan struct{} // closed by Close: pending retries are dropped

	mu         sync.Mutex
	closed     bool
	active     int           // jobs not yet ended: in flight or waiting for a retry
	idle       chan struct{} // closed when active drops to 0; replaced when it rises from 0
	deliveries []Delivery
}

// newNotifier returns a notifier whose resource_url values name extHost (host[:port], no scheme).
func newNotifier(extHost string, opts notifierOptions) *notifier {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = defaultAttempts
	}
	if opts.Backoff == nil {
		opts.Backoff = harborBackoff
	}
	if opts.NewID == nil {
		opts.NewID = newUUID
	}
	secure := opts.Client
	if secure == nil {
		// The system roots, and HTTP(S)_PROXY as the jobservice honours it (§1.2).
		secure = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	idle := make(chan struct{})
	close(idle)
	return &notifier{
		extHost:  extHost,
		opts:     opts,
		secure:   secure,
		insecure: insecureClient(secure),
		stop:     make(chan struct{}),
		idle:     idle,
	}
}

// insecureClient is c with certificate verification off, for skip_cert_verify targets (Harbor's "insecure"
// client, src/common/http/transport.go). A transport other than *http.Transport is replaced by a default one.
func insecureClient(c *http.Client) *http.Client {
	var tr *http.Transport
	if t, ok := c.Transport.(*http.Transport); ok {
		tr = t.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // the target asked for it (skip_cert_verify)
	ic := *c
	ic.Transport = tr
	return &ic
}

// job is one (policy, target) delivery of one event: what every attempt sends.
type job struct {
	policyID int64
	event    Event
	target   Target
	body     []byte
	header   http.Header
}

// Notify delivers ev to each target of policy policyID of project projectID, in the background (delivery
// order is not promised, HARBOR.md §7). Bodies are rendered before Notify returns. Slack targets are skipped:
// the stand-in renders no Slack messages. After Close, Notify does nothing.
func (n *notifier) Notify(projectID, policyID int64, targets []Target, ev Event) {
	for _, t := range targets {
		if t.Type == "slack" {
			continue
		}
		j := &job{policyID: policyID, event: ev, target: t}
		var err error
		j.body, j.header, err = n.render(projectID, policyID, t, ev)
		if !n.begin() {
			return
		}
		if err != nil {
			n.record(Delivery{PolicyID: policyID, Event: ev, Target: t, Err: err, At: time.Now()})
			n.end()
			continue
		}
		go n.run(j)
	}
}

// render builds the body and headers of one (policy, target) delivery. The headers are all Harbor sets: the
// formatter's Content-Type and, when configured, the auth header verbatim as Authorization; no X-Harbor-*, no
// ce-* headers, no signature (§1.2, §1.7).
func (n *notifier) render(projectID, policyID int64, t Target, ev Event) ([]byte, http.Header, error) {
	h := http.Header{}
	var body []byte
	var err error
	switch t.PayloadFormat {
	case "", formatDefault:
		body, err = defaultBody(n.extHost, ev)
		h.Set("Content-Type", contentTypeDefault)
	case formatCloudEvents:
		// A fresh id per (policy, target), kept across retries (§1.5, §7).
		body, err = cloudEventsBody(n.extHost, projectID, policyID, n.opts.NewID(), ev)
		h.Set("Content-Type", contentTypeCloudEvents)
	default:
		return nil, nil, fmt.Errorf("payload format %q is neither %s nor %s", t.PayloadFormat, formatDefault, formatCloudEvents)
	}
	if err != nil {
		return nil, nil, err
	}
	if t.AuthHeader != "" {
		h.Set("Authorization", t.AuthHeader)
	}
	return body, h, nil
}

// begin counts a job in, unless the notifier is closed.
func (n *notifier) begin() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	if n.active == 0 {
		n.idle = make(chan struct{})
	}
	n.active++
	return true
}

// end counts a job out.
func (n *notifier) end() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.active--
	if n.active == 0 {
		close(n.idle)
	}
}

func (n *notifier) record(d Delivery) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deliveries = append(n.deliveries, d)
}

// run makes the attempts of one job: up to Attempts, with Backoff between them, until one gets a 2xx. Close
// drops the retries still waiting; an attempt in flight finishes (it is bounded by Timeout).
func (n *notifier) run(j *job) {
	defer n.end()
	for attempt := 1; ; attempt++ {
		d := n.attempt(j, attempt)
		n.record(d)
		if d.OK() || attempt >= n.opts.Attempts {
			return
		}
		wait := time.NewTimer(n.opts.Backoff(attempt))
		select {
		case <-wait.C:
		case <-n.stop:
			wait.Stop()
			return
		}
	}
}

// attempt POSTs the job's body once.
func (n *notifier) attempt(j *job, attempt int) Delivery {
	d := Delivery{PolicyID: j.policyID, Event: j.event, Target: j.target, Attempt: attempt, Body: j.body, Header: j.header.Clone()}
	client := n.secure
	if j.target.SkipCertVerify {
		client = n.insecure
	}
	// Harbor's http.Client.Timeout covers the whole exchange, the answer's body included (§1.2).
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Timeout)
	defer cancel()
	// The address is used as stored: Harbor saves it verbatim, even without a scheme (§1.1).
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.target.Address, bytes.NewReader(j.body))
	if err != nil {
		d.Err, d.At = fmt.Errorf("webhook request: %w", err), time.Now()
		return d
	}
	req.Header = j.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		d.Err, d.At = err, time.Now()
		return d
	}
	d.Status = resp.StatusCode
	d.Reply, err = io.ReadAll(io.LimitReader(resp.Body, replyLimit))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The answer did not arrive whole within the timeout: Harbor's client fails the attempt too.
		d.Err = fmt.Errorf("reading the webhook answer: %w", err)
	}
	d.At = time.Now()
	return d
}

// Deliveries returns every attempt so far, in the order they ended.
func (n *notifier) Deliveries() []Delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Delivery(nil), n.deliveries...)
}

// Wait returns when no delivery is in flight or pending a retry, or when ctx ends.
func (n *notifier) Wait(ctx context.Context) error {
	n.mu.Lock()
	idle := n.idle
	n.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for webhook deliveries: %w", context.Cause(ctx))
	}
}

// Close stops retries and waits for the attempts in flight.
func (n *notifier) Close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.stop)
	}
	n.mu.Unlock()
	_ = n.Wait(context.Background()) // cannot fail: the context never ends
}

// Notifier is the stand-in's webhook notifier on its own, for tests of a webhook receiver that want Harbor's real
// deliveries without a whole stand-in: Notify, Deliveries, Wait and Close as the stand-in's server uses them.
type Notifier struct {
	*notifier
}

// NotifierOptions shape a Notifier's delivery; zero values take Harbor's: a 3 s timeout, 3 attempts, gocraft/work's
// backoff of 16–118 s, a client with the system roots, UUIDv4 CloudEvents ids (HARBOR.md §1.2, §1.5).
type NotifierOptions struct {
	Timeout  time.Duration
	Attempts int
	Backoff  func(failures int) time.Duration
	Client   *http.Client
	NewID    func() string
}

// NewNotifier returns a Notifier whose resource_url values name extHost (host[:port], no scheme).
func NewNotifier(extHost string, opts NotifierOptions) *Notifier {
	return &Notifier{newNotifier(extHost, notifierOptions(opts))}
}
