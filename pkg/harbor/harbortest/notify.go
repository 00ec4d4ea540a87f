package harbortest

import (
	"context"
	"net/http"
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
	// Attempt counts from 1; Harbor makes at most 3 (HARBOR.md §1.2).
	Attempt int
	Body    []byte
	Header  http.Header
	// Status is the receiver's answer (0 when the request failed: Err).
	Status int
	Err    error
	At     time.Time
}

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
}

// notifier builds and delivers the webhook bodies of events, asynchronously, and records every attempt.
//
// This file is a placeholder with the shape the stand-in calls: Notify, Deliveries, Wait, Close.
type notifier struct {
	extHost string
	opts    notifierOptions
}

// newNotifier returns a notifier whose resource_url values name extHost (host[:port], no scheme).
func newNotifier(extHost string, opts notifierOptions) *notifier {
	return &notifier{extHost: extHost, opts: opts}
}

// Notify delivers ev to each target of policy policyID of project projectID, in the background (delivery
// order is not promised, HARBOR.md §7).
func (n *notifier) Notify(projectID, policyID int64, targets []Target, ev Event) {}

// Deliveries returns every attempt so far, in the order they ended.
func (n *notifier) Deliveries() []Delivery { return nil }

// Wait returns when no delivery is in flight or pending a retry, or when ctx ends.
func (n *notifier) Wait(ctx context.Context) error { return nil }

// Close stops retries and waits for the attempts in flight.
func (n *notifier) Close() {}
