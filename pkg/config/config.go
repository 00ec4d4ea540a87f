// Package config reads harborflow.yaml: one strict YAML file (an unknown key is an error), `${NAME}`
// expansion of string values from the environment, a safe default for every value, relative paths relative to
// the file, and errors that name the file, the key and the problem.
//
// A process reads the file for the stages it runs (Load): it expands ${NAME} in, and validates, only nats, log,
// ops and the sections those stages use (Stages), so an inspector needs none of the receiver's webhook secrets.
// The ops commands read nats and log only (LoadOps); `harborflow config check` reads everything and lists the
// variables that are not set with the stages that need them (Check).
package config

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/secret"
)

// DefaultFile is the file every harborflow command reads when neither --config nor $HARBORFLOW_CONFIG is set.
const DefaultFile = "harborflow.yaml"

// EnvFile is the environment variable naming the config file.
const EnvFile = "HARBORFLOW_CONFIG"

// Source kinds.
const (
	SourceHarbor       = "harbor"
	SourceDistribution = "distribution"
	SourcePoll         = "poll"
)

// Config is the whole file. Each stage reads its own sections (Stages); a Config loaded for some stages holds
// only theirs.
//
// A string field (or a list of strings) tagged config:"path" is a path: relative, it is relative to the config
// file's directory.
type Config struct {
	NATS       NATS       `yaml:"nats"`
	HTTP       HTTP       `yaml:"http"`
	Log        Log        `yaml:"log"`
	Ops        Ops        `yaml:"ops"`
	Sources    []Source   `yaml:"sources"`
	Registries []Registry `yaml:"registries"`
	Inspector  Inspector  `yaml:"inspector"`
	Rebuilds   []Rebuild  `yaml:"rebuilds"`
	// Promotions are the promoter's chains; Retention the retention stage's policies.
	Promotions []Promotion `yaml:"promotions"`
	Retention  []Retention `yaml:"retention"`
	// Signing is the key the rebuilder signs every image it pushes with, and the keys signatures are verified
	// with (pkg/signature); empty: nothing is signed.
	Signing Signing `yaml:"signing"`
}

// NATS is where messages are stored: an external server (URL) or the embedded one.
type NATS struct {
	// URL of the NATS servers (comma-separated). Empty: start an embedded JetStream server.
	URL string `yaml:"url"`
	// Listen is the embedded server's client address, so the CLI and other processes can connect.
	Listen string `yaml:"listen"`
	// StoreDir is the embedded server's JetStream store.
	StoreDir string `yaml:"store_dir" config:"path"`
	// Replicas per stream: 1 on one server, 3 on a cluster.
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is how long JetStream remembers message ids for de-duplication.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxAge and MaxBytes bound each stream; 0 means unlimited.
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// SyncAlways makes the embedded server fsync every write before acknowledging it (default true).
	SyncAlways bool `yaml:"sync_always"`
	// CredsFile is a NATS credentials file (user JWT and NKey seed) for an external server.
	CredsFile string `yaml:"creds_file" config:"path"`
	// CAFile is an extra CA for a tls:// external server; certificates are always verified.
	CAFile string `yaml:"ca_file" config:"path"`
}

// ConnectOptions are the nats options the nats section asks for an external server: credentials and an extra
// CA. The embedded server (nats.url empty) needs none.
func (n NATS) ConnectOptions() []nats.Option {
	if n.URL == "" {
		return nil
	}
	var opts []nats.Option
	if n.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	}
	if n.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.CAFile))
	}
	return opts
}

// HTTP is the receiver's listener.
type HTTP struct {
	Listen       string `yaml:"listen"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	// PublishTimeout bounds the wait for JetStream's ack of one webhook before answering 503.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// PublicURL is where registries reach the receiver (https://harborflow.acme.example), for the webhook
	// policies `harborflow harbor setup-webhooks` writes; empty: http://<http.listen>.
	PublicURL string `yaml:"public_url"`
}

// Ops is what every process has besides its stages: a listener for /healthz, /readyz and /metrics, and how it
// stops.
type Ops struct {
	// Listen is the address of /healthz, /readyz and /metrics for a process that does not run the receiver (one
	// that does serves them on http.listen).
	Listen string `yaml:"listen"`
	// ShutdownGrace is how long running handlers get to finish on SIGTERM or SIGINT before they are cancelled
	// (their messages are then redelivered at once).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// DrainTimeout is what a stop takes at most after ops.shutdown_grace: cancelled handlers return, NATS drains
// (pending publishes and acks flush) and the embedded server stops. With the default grace the whole stop
// fits in 10 s.
const DrainTimeout = 4 * time.Second

// StopTimeout bounds a whole graceful stop: the handlers' grace, then DrainTimeout. (It replaces
// http.shutdown_timeout, which bounded the same thing without saying how long handlers get.)
func (o Ops) StopTimeout() time.Duration { return o.ShutdownGrace + DrainTimeout }

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Development switches to human-readable console output.
	Development bool `yaml:"development"`
}

// Source is something that tells harborflow about registry events.
type Source struct {
	// Name is the middle token of registry.<name>.<kind> ([a-z0-9-]+).
	Name string `yaml:"name"`
	// Kind is harbor, distribution or poll.
	Kind string `yaml:"kind"`
	// Host is the registry host the events are about, as in registries[].host.
	Host string `yaml:"host"`
	// Secrets are whole Authorization header values; any one of them is accepted (rotation).
	Secrets []Secret `yaml:"secrets"`
	// IgnoreOperators are operators (our own robot account) whose events are counted and dropped.
	IgnoreOperators []string `yaml:"ignore_operators"`

	// Poll sources only.
	Interval     time.Duration    `yaml:"interval"`
	Initial      string           `yaml:"initial"`
	Repositories []PollRepository `yaml:"repositories"`
}

// PollRepository is a repository a poll source watches.
type PollRepository struct {
	Repository string   `yaml:"repository"`
	Tags       []string `yaml:"tags"`
	Platforms  []string `yaml:"platforms"`
}

// Registry holds the credentials and TLS settings of one registry host.
type Registry struct {
	Host string `yaml:"host"`
	// Harbor says the host is a Harbor: the same account and TLS settings also reach its API
	// (https://<host>/api/v2.0, HarborHost), for promotion, retention and harborflow harbor setup-webhooks.
	Harbor         bool   `yaml:"harbor"`
	Username       string `yaml:"username"`
	Password       Secret `yaml:"password"`
	CAFile         string `yaml:"ca_file" config:"path"`
	Insecure       bool   `yaml:"insecure"`
	PlainHTTP      bool   `yaml:"plain_http"`
	MaxConcurrency int    `yaml:"max_concurrency"`
}

// Inspector configures the inspector stage.
type Inspector struct {
	// UpdateLevelLabel is the config label (or, failing that, manifest annotation) holding the update level.
	UpdateLevelLabel string `yaml:"update_level_label"`
	// RequireUpdateLevel are globs of registry/repository whose images must carry an update level; one without
	// is published as image.rejected.
	RequireUpdateLevel []string `yaml:"require_update_level"`
	// IndexWait is how long an untagged push waits — a single-platform manifest for an index that covers it (a
	// multi-arch push sends its children first), any top-level artifact for the push that tags it (pushed by
	// digest, then tagged) — before it is published as an untagged image of its own.
	IndexWait time.Duration `yaml:"index_wait"`
	// Concurrency is how many inspections run at once.
	Concurrency int `yaml:"concurrency"`
}

// Rebuild is a recipe: rebuild target whenever base gets a new update level.
type Rebuild struct {
	// Name identifies the recipe ([a-z0-9-]+): in the rebuilds KV bucket, image.rebuilt and harborflow rebuild.
	Name string `yaml:"name"`
	// Base is the base image the recipe follows, registry/repository:tag. Every image.inspected of that
	// repository whose tag is of the same version and flavour (4.2.0 follows 4.2.0, 4.2.0.0 and 4.2.0.16, not
	// 4.2.0.16-rocky) is a candidate.
	Base string `yaml:"base"`
	// Builder is overlay (default), dockerfile or rebase.
	Builder string `yaml:"builder"`
	// Context is the directory of files to add (overlay) or the Dockerfile's build context (dockerfile). A
	// relative path is relative to the configuration file.
	Context string `yaml:"context" config:"path"`
	// Dockerfile is the Dockerfile within Context (dockerfile builder; default Dockerfile). It gets
	// --build-arg BASE_IMAGE=<base>@<digest>.
	Dockerfile string `yaml:"dockerfile"`
	// Owner is the uid:gid of the overlay's files (default 0:0; WSO2 images run as 802:802).
	Owner string `yaml:"owner"`
	// Target is the repository the rebuilt image is pushed to, registry/repository.
	Target string `yaml:"target"`
	// Tag is the tag template (default {{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}}); it executes on
	// an imagetag.Tag.
	Tag string `yaml:"tag"`
	// Platforms are the os/arch[/variant] to build; empty: every platform of the base.
	Platforms []string `yaml:"platforms"`
	// Labels and Env are set on every platform's config.
	Labels map[string]string `yaml:"labels"`
	Env    map[string]string `yaml:"env"`
	// Image is the derived image the rebase builder moves onto each new base, registry/repository:tag or
	// @digest, until the recipe has built one of its own; later rebases move the last image built.
	Image string `yaml:"image"`
	// Timeout bounds one build (default 30m).
	Timeout time.Duration `yaml:"timeout"`
	// OnDigestChange rebuilds when the base's digest changes at the same update level (an OS patch); the
	// build gets the next build number (default true).
	OnDigestChange *bool `yaml:"on_digest_change"`
}

// Builders.
const (
	BuilderOverlay    = "overlay"
	BuilderDockerfile = "dockerfile"
	BuilderRebase     = "rebase"
)

// RebuildOnDigestChange reports whether the recipe rebuilds on a new base digest at the same update level.
func (r Rebuild) RebuildOnDigestChange() bool { return r.OnDigestChange == nil || *r.OnDigestChange }

func (r *Rebuild) setDefaults() {
	if r.Builder == "" {
		r.Builder = BuilderOverlay
	}
	if r.Owner == "" {
		r.Owner = "0:0"
	}
	if r.Tag == "" {
		r.Tag = imagetag.DefaultTemplate
	}
	if r.Dockerfile == "" {
		r.Dockerfile = "Dockerfile"
	}
	if r.Timeout == 0 {
		r.Timeout = 30 * time.Minute
	}
}

// Promotion is a chain of stages an image is carried along, stage by stage, when the gates of the next stage
// pass on its exact digest.
type Promotion struct {
	// Name identifies the chain ([a-z0-9-]+): in image.promoted, harborflow approve and promotion show.
	Name string `yaml:"name"`
	// Stages are the repositories in order (at least two). An image enters the first by a rebuild or a push;
	// every later one by promotion, when that stage's gates pass.
	Stages []PromotionStage `yaml:"stages"`
	// RollingTags are tag templates over the image's tag (imagetag.Template: {{.Version}}, latest), moved in
	// every stage the image reaches, after its unique tag.
	RollingTags []string `yaml:"rolling_tags"`
	// ScanTimeout is how long a scan result may take: none by then, ask Harbor to scan; none after another
	// ScanTimeout, blocked (default 10m).
	ScanTimeout time.Duration `yaml:"scan_timeout"`
}

// PromotionStage is one repository of a chain and what an image must pass to enter it.
type PromotionStage struct {
	// Name names the stage in harborflow approve --stage and in messages ([a-z0-9._-]+, unique in the chain);
	// default: the repository's project (wso2-prod of harbor.acme.example/wso2-prod/acme-am).
	Name string `yaml:"name"`
	// Repository is registry/repository.
	Repository string `yaml:"repository"`
	// Gates are checked on the exact digest (every platform of an index) in the stage the image leaves.
	Gates Gates `yaml:"gates"`
}

// Gates are what an image must pass to enter a stage. The zero value lets every image in.
type Gates struct {
	// MaxSeverity is the highest severity Harbor's scan of every platform digest may report: None, Low,
	// Medium, High or Critical. Needs Harbor's API on the stage the image leaves.
	MaxSeverity string `yaml:"max_severity"`
	// Signed asks for a cosign signature of the digest.
	Signed bool `yaml:"signed"`
	// Provenance asks for a SLSA provenance attestation of the digest (cosign's sha256-<hex>.att, as the
	// rebuilder writes it) that verifies with signing.public_keys and names a base from an allowed repository.
	Provenance *ProvenanceGate `yaml:"provenance"`
	// Labels are Harbor labels that must be on the artifact (a team's sign-off). Needs Harbor's API on the
	// stage the image leaves.
	Labels []string `yaml:"labels"`
	// MinAge is how long the digest must have been in the stage it leaves (a soak).
	MinAge time.Duration `yaml:"min_age"`
	// Approval asks for a person's harborflow approve of the digest for this stage.
	Approval bool `yaml:"approval"`
	// NonRoot asks for a config User that is set and is not root (or uid 0) on every platform.
	NonRoot bool `yaml:"non_root"`
	// AllowedPorts, when set, are the only ExposedPorts an image may have (9443/tcp); set and empty: none.
	AllowedPorts []string `yaml:"allowed_ports"`
}

// ProvenanceGate is the provenance gate: what the image's verified provenance must say.
type ProvenanceGate struct {
	// Base are globs of registry/repository (pkg/glob): the repository of the base image the provenance names
	// (registry.wso2.com/wso2-apim/am of registry.wso2.com/wso2-apim/am@sha256:…) must match one of them.
	Base []string `yaml:"base"`
}

// DefaultScanTimeout is a promotion's scan_timeout when the file sets none.
const DefaultScanTimeout = 10 * time.Minute

func (p *Promotion) setDefaults() {
	if p.ScanTimeout == 0 {
		p.ScanTimeout = DefaultScanTimeout
	}
	for i := range p.Stages {
		if p.Stages[i].Name == "" {
			if r, err := imageref.ParseRepository(p.Stages[i].Repository); err == nil {
				p.Stages[i].Name = r.Project()
			}
		}
	}
}

// Retention is a keep-N policy over repositories of a Harbor (the registry needs harbor: true: the artifacts,
// their push times and accessories are read, and deleted, through Harbor's API).
type Retention struct {
	// Repositories are globs of registry/project/repository (pkg/glob): harbor.acme.example/wso2-*/acme-am.
	Repositories []string `yaml:"repositories"`
	// KeepPerVersion is how many builds of each version line (4.2.0, 4.2.0-rocky) are kept, newest first.
	KeepPerVersion int `yaml:"keep_per_version"`
	// Protect are regular expressions, each matched against the whole tag: what a matching tag points to is
	// never deleted (every rolling tag of every promotion chain is protected too).
	Protect []string `yaml:"protect"`
	// MinAge: nothing pushed more recently is deleted.
	MinAge time.Duration `yaml:"min_age"`
	// DryRun publishes the plan and deletes nothing.
	DryRun bool `yaml:"dry_run"`
	// Schedule is how often every matching repository is planned besides the runs after pushes and
	// promotions; 0 turns the schedule off.
	Schedule time.Duration `yaml:"schedule"`
}

// Signing is a cosign key pair: the private key (cosign's encrypted cosign.key, with its password, or a PEM
// ECDSA P-256 key) and the public keys accepted when verifying (several while a key is being rotated).
type Signing struct {
	// Key is the private key file; empty turns signing off.
	Key string `yaml:"key" config:"path"`
	// Password decrypts an encrypted cosign.key; from ${NAME}, never written in the file.
	Password Secret `yaml:"password"`
	// PublicKeys are PEM public key files; each may hold several keys.
	PublicKeys []string `yaml:"public_keys" config:"path"`
}

// Secret is a value that must never be printed (see package secret).
type Secret = secret.Secret

// Default returns the configuration used for every value the file does not set.
func Default() Config {
	return Config{
		NATS: NATS{
			Listen:          "127.0.0.1:4222",
			StoreDir:        "./var/nats",
			Replicas:        1,
			DuplicateWindow: 10 * time.Minute,
			MaxAge:          30 * 24 * time.Hour,
			MaxBytes:        1 << 30,
			SyncAlways:      true,
		},
		HTTP: HTTP{
			Listen:         "127.0.0.1:8080",
			MaxBodyBytes:   1 << 20,
			PublishTimeout: 2 * time.Second,
		},
		Log:       Log{Level: "info"},
		Ops:       Ops{Listen: "127.0.0.1:8081", ShutdownGrace: 5 * time.Second},
		Inspector: Inspector{UpdateLevelLabel: "update_level", IndexWait: 10 * time.Second, Concurrency: 8},
	}
}

func (s *Source) setDefaults() {
	if s.Kind == SourcePoll {
		if s.Interval == 0 {
			s.Interval = 5 * time.Minute
		}
		if s.Initial == "" {
			s.Initial = "publish"
		}
	}
}

// StreamOptions are the stream settings of the nats section.
func (n NATS) StreamOptions() event.StreamOptions {
	return event.StreamOptions{Replicas: n.Replicas, DuplicateWindow: n.DuplicateWindow, MaxAge: n.MaxAge, MaxBytes: n.MaxBytes}
}

// Source returns the source called name.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}

// String describes the configuration without secrets, for a log line.
func (c *Config) String() string {
	return fmt.Sprintf("%d sources, %d registries, nats %s", len(c.Sources), len(c.Registries), c.natsWhere())
}

func (c *Config) natsWhere() string {
	if c.NATS.URL == "" {
		return "embedded at " + c.NATS.Listen
	}
	return "external"
}
