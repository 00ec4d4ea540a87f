package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/logging"
)

// Defaults of a Client.
const (
	// DefaultMaxConcurrency is how many requests run at once against a host whose max_concurrency is 0
	// (regclient's own default is 3, which costs throughput).
	DefaultMaxConcurrency = 8
	// DefaultMaxRetryWait is the longest Retry-After the client waits for inside a call: a registry asking
	// for more gets a *RateLimitError at once, and the caller (the bus) waits instead of a worker.
	DefaultMaxRetryWait = 2 * time.Second
	// DefaultResponseTimeout is how long a read (GET, HEAD) waits for the registry's answer (see
	// WithResponseTimeout).
	DefaultResponseTimeout = 10 * time.Second
	// DefaultCacheSize is how many manifests, and how many image configs, the client keeps.
	DefaultCacheSize = 4096
	// DefaultVersion is the version in the User-Agent when WithVersion is not given.
	DefaultVersion = "dev"
	// UserAgentPrefix starts the User-Agent of every request the client makes (UserAgent): a registry's pull
	// notifications carrying it are harborflow's own reads.
	UserAgentPrefix = "harborflow/"

	// regclient retries nothing (see "Retries" in doc.go): a request that fails (no connection, TLS, a 5xx, a
	// timeout) fails the call, and the caller retries it later — a stage through the bus's back-off. A
	// retry limit of 1 is regclient's way of saying so: its count has an intentional extra attempt for the
	// 401 → token → request exchange of authentication, and the first failure reaches the limit.
	retryLimit = 1
	// regclient also delays every request to a host by its back-off of that host, which grows with each
	// failure (delayInit << failures, up to delayMax) and queues concurrent requests one delay behind
	// another: against an unreachable host, a call that tries once still waited 4–22 s for its turn. It
	// cannot be switched off (zero means its defaults), so it is made a nanosecond.
	delayInit = time.Nanosecond
	delayMax  = time.Nanosecond
	// maxConfigSize bounds an image config the client reads.
	maxConfigSize = 8 << 20
	// maxManifestSize bounds a manifest the client reads directly (regclient's own limit is 4 MiB too).
	maxManifestSize = 4 << 20
)

// Client reads registries, and writes images to them (write.go). It is safe for concurrent use. Every call
// ends when its context does. A call to a registry that cannot be reached fails after one attempt (see
// "Retries" in doc.go): connecting takes at most ConnectTimeout, and a read waits at most the response
// timeout for an answer; a write is bounded by its context only: give it a deadline.
type Client struct {
	rc        *regclient.RegClient
	log       *zap.Logger
	version   string
	maxWait   time.Duration
	cacheSize int
	wraps     []func(http.RoundTripper) http.RoundTripper
	hosts     *hostTransport
	direct    *direct
	stages    stagePool // staging layouts of writes (write.go)

	respTimeout time.Duration // of a read (hostTransport)
	metrics     *metrics      // nil without WithMetrics

	manifests *lru[string, *cachedManifest] // registry/repository@digest
	// bodies are the manifests of manifests by registry@digest, whatever repository they were read from: what
	// Tag puts under a tag in another repository of that registry (the registry checks that its blobs are there).
	bodies  *lru[string, *cachedManifest]
	configs *lru[string, *imageConfig] // config digest
}

// Opt configures a Client.
type Opt func(*Client)

// WithLogger sets the logger (default: none).
func WithLogger(log *zap.Logger) Opt {
	return func(c *Client) {
		if log != nil {
			c.log = log
		}
	}
}

// WithVersion sets the version in the User-Agent harborflow/<version> (default "dev").
func WithVersion(v string) Opt {
	return func(c *Client) {
		if v != "" {
			c.version = v
		}
	}
}

// WithTransport wraps the transport that sends each request to the wire, below the client's retries and
// above TLS, for example with (*Counter).Wrap. Several wrappers nest, the first outermost.
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Opt {
	return func(c *Client) {
		if wrap != nil {
			c.wraps = append(c.wraps, wrap)
		}
	}
}

// WithMaxRetryWait sets the longest Retry-After the client waits for inside a call (default 2s). A registry
// asking for more gets a *RateLimitError at once, for the caller to retry later; 0 never waits.
func WithMaxRetryWait(d time.Duration) Opt {
	return func(c *Client) {
		if d >= 0 {
			c.maxWait = d
		}
	}
}

// WithCacheSize sets how many manifests and how many image configs the client keeps (default 4096 each);
// 0 keeps none.
func WithCacheSize(n int) Opt {
	return func(c *Client) {
		if n >= 0 {
			c.cacheSize = n
		}
	}
}

// New returns a Client for the registry hosts regs. Hosts not listed are reached anonymously,
// over verified TLS, with DefaultMaxConcurrency. No credentials are read from anywhere else.
func New(regs []Host, opts ...Opt) (*Client, error) {
	c := &Client{
		log:       zap.NewNop(),
		version:   DefaultVersion,
		maxWait:   DefaultMaxRetryWait,
		cacheSize: DefaultCacheSize,

		respTimeout: DefaultResponseTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	seen := map[string]bool{}
	hosts := make([]rcconfig.Host, 0, len(regs))
	for _, r := range regs {
		switch {
		case r.Name == "" || strings.Contains(r.Name, "/"):
			return nil, fmt.Errorf("registry host %q: want host or host:port", r.Name)
		case seen[r.Name]:
			return nil, fmt.Errorf("registry %s: listed twice", r.Name)
		case r.MaxConcurrency < 0:
			return nil, fmt.Errorf("registry %s: max_concurrency %d is negative", r.Name, r.MaxConcurrency)
		}
		seen[r.Name] = true
		h := rcconfig.Host{
			Name:          r.Name,
			User:          r.Username,
			Pass:          r.Password.Value(),
			TLS:           rcconfig.TLSEnabled,
			ReqConcurrent: int64(concurrency(r, DefaultMaxConcurrency)),
			RepoAuth:      true,
		}
		switch {
		case r.PlainHTTP:
			h.TLS = rcconfig.TLSDisabled
		case r.Insecure:
			h.TLS = rcconfig.TLSInsecure
		}
		hosts = append(hosts, h)
	}
	if !seen["docker.io"] && !seen["index.docker.io"] && !seen["registry-1.docker.io"] {
		// regclient sets Docker Hub up itself, with its defaults; give it ours.
		hosts = append(hosts, rcconfig.Host{Name: "docker.io", TLS: rcconfig.TLSEnabled, ReqConcurrent: DefaultMaxConcurrency, RepoAuth: true})
	}
	ht, err := newHostTransport(regs, DefaultMaxConcurrency, c.log)
	if err != nil {
		return nil, err
	}
	ht.respTimeout, ht.metrics, ht.log = c.respTimeout, c.metrics, c.log
	c.hosts = ht
	var rt http.RoundTripper = ht
	rt = transferTransport{next: rt} // blob bytes of each write (transfer.go)
	for i := len(c.wraps) - 1; i >= 0; i-- {
		rt = c.wraps[i](rt)
	}
	ua := UserAgent(c.version)
	rt = &retryTransport{next: rt, userAgent: ua, maxWait: c.maxWait, log: c.log, metrics: c.metrics, gates: map[string]time.Time{}}
	c.direct = newDirect(rt, regs)
	rt = authRecorder{next: rt, direct: c.direct}

	c.rc = regclient.New(
		// RepoAuth: a token per repository. Without it regclient asks for one token holding the scope of
		// every repository the process has read, a list (and a token request URL) that only grows.
		regclient.WithConfigHostDefault(rcconfig.Host{TLS: rcconfig.TLSEnabled, ReqConcurrent: DefaultMaxConcurrency, RepoAuth: true}),
		regclient.WithConfigHost(hosts...),
		regclient.WithUserAgent(ua),
		regclient.WithSlog(newSlog(c.log)),
		regclient.WithRegOpts(
			reg.WithHTTPClient(&http.Client{Transport: rt}),
			reg.WithRetryLimit(retryLimit),
			reg.WithDelay(delayInit, delayMax),
		),
	)
	c.manifests = newLRU[string, *cachedManifest](c.cacheSize)
	c.bodies = newLRU[string, *cachedManifest](c.cacheSize)
	c.configs = newLRU[string, *imageConfig](c.cacheSize)
	return c, nil
}

func concurrency(r Host, def int) int {
	if r.MaxConcurrency > 0 {
		return r.MaxConcurrency
	}
	return def
}

// UserAgent is the User-Agent of a client of that version: harborflow/<version>.
func UserAgent(version string) string { return UserAgentPrefix + version }

// Close releases idle connections and the idle staging directories of writes. The Client stays usable.
func (c *Client) Close() {
	c.hosts.closeIdle()
	c.stages.removeIdle()
}

// parseRef parses registry/repository[:tag][@digest] (imageref.Parse) into regclient's form. Only registry
// references are accepted: regclient would read an ocidir:// reference from the local disk.
func parseRef(s string) (ref.Ref, error) {
	r, err := imageref.Parse(s)
	if err != nil {
		return ref.Ref{}, err
	}
	return r.RegClient(), nil
}

// Resolve asks the registry what ref points to now, with one HEAD (a GET only when the registry's HEAD
// answer has no digest). For an index it is the index's digest. It never answers from the cache: it is how a
// stage learns the truth about a tag.
func (c *Client) Resolve(ctx context.Context, ref string) (Descriptor, error) {
	r, err := parseRef(ref)
	if err != nil {
		return Descriptor{}, opError("resolving", ref, err)
	}
	m, err := c.rc.ManifestHead(ctx, r, regclient.WithManifestRequireDigest())
	if err != nil {
		return Descriptor{}, opError("resolving", ref, mapErr(err))
	}
	d := m.GetDescriptor()
	return Descriptor{Digest: d.Digest.String(), MediaType: d.MediaType, Size: d.Size}, nil
}

// Manifest reads the manifest ref points to and classifies it, without reading image configs or an
// index's children: one GET, none when ref has a digest the client has already read. For an index,
// Platforms lists each platform's digest as the index gives it; for an image it is empty.
func (c *Client) Manifest(ctx context.Context, ref string) (*Artifact, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, opError("reading manifest", ref, err)
	}
	a, _, err := c.manifestArtifact(ctx, r)
	if err != nil {
		return nil, opError("reading manifest", ref, err)
	}
	return a, nil
}

// ManifestBody returns the manifest ref points to, byte for byte, with its descriptor: what is kept to put it
// back with PutManifest. One GET, none when ref has a digest the client has already read.
func (c *Client) ManifestBody(ctx context.Context, ref string) (Descriptor, []byte, error) {
	r, err := parseRef(ref)
	if err != nil {
		return Descriptor{}, nil, opError("reading manifest", ref, err)
	}
	cm, err := c.fetchManifest(ctx, r)
	if err != nil {
		return Descriptor{}, nil, opError("reading manifest", ref, err)
	}
	return cm.desc, slices.Clone(cm.raw), nil
}

// Inspect reads and classifies the manifest ref points to, and for an image its config, for an index each
// platform's manifest and config. Give ref a digest when it is known (registry/repository[:tag]@digest):
// the manifest is then fetched by digest, and manifests and configs already read are not fetched again, so
// inspecting a known digest costs no request. A tag in ref is used for cosign's tag scheme.
func (c *Client) Inspect(ctx context.Context, ref string) (*Artifact, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, opError("inspecting", ref, err)
	}
	a, cm, err := c.manifestArtifact(ctx, r)
	if err != nil {
		return nil, opError("inspecting", ref, err)
	}
	switch a.Kind {
	case KindImage:
		p := Platform{Digest: a.Digest, Annotations: maps.Clone(cm.m.Annotations)}
		if cm.m.Config != nil { // Docker schema 1 manifests have none
			cfg, err := c.config(ctx, r, *cm.m.Config)
			if err != nil {
				return nil, opError("inspecting", ref, err)
			}
			cfg.fill(&p)
		}
		a.Platforms = []Platform{p}
		a.Labels = maps.Clone(p.Labels)
	case KindIndex:
		if a.Platforms, err = c.platforms(ctx, r, cm.m.Manifests); err != nil {
			return nil, opError("inspecting", ref, err)
		}
		a.Labels = commonLabels(a.Platforms)
	}
	return a, nil
}

// Tags lists every tag of repository (registry/repository), following the registry's pages.
func (c *Client) Tags(ctx context.Context, repository string) ([]string, error) {
	r, err := parseRef(repository)
	if err != nil {
		return nil, opError("listing tags of", repository, err)
	}
	tl, err := c.rc.TagList(ctx, r)
	if err != nil {
		return nil, opError("listing tags of", repository, mapErr(err))
	}
	tags, err := tl.GetTags()
	if err != nil {
		return nil, opError("listing tags of", repository, err)
	}
	return tags, nil
}

// opError says what the client was doing and on which reference, naming the reference once: regclient's
// errors name it themselves ("failed to get manifest <ref>: ..."), and then only the operation is added.
func opError(op, ref string, err error) error {
	if strings.Contains(err.Error(), ref) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s %s: %w", op, ref, err)
}

// cachedManifest is a manifest as read from a registry: its descriptor and the fields classification uses.
type cachedManifest struct {
	desc Descriptor
	m    manifestJSON
	// raw is the manifest's body, byte for byte: what Tag puts under a new tag without reading it again.
	raw []byte
}

// manifestArtifact fetches (or recalls) r's manifest and classifies it.
func (c *Client) manifestArtifact(ctx context.Context, r ref.Ref) (*Artifact, *cachedManifest, error) {
	cm, err := c.fetchManifest(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	a := &Artifact{
		Registry:     r.Registry,
		Repository:   r.Repository,
		Tag:          r.Tag,
		Digest:       cm.desc.Digest,
		MediaType:    cm.desc.MediaType,
		Size:         cm.desc.Size,
		ArtifactType: cm.m.ArtifactType,
		Annotations:  maps.Clone(cm.m.Annotations),
	}
	a.Kind, a.Accessory, a.Subject = classify(cm.desc.MediaType, &cm.m, r.Tag)
	if a.Kind == KindIndex {
		for _, d := range cm.m.Manifests {
			if skipChild(d) {
				continue
			}
			p := Platform{Digest: d.Digest, Annotations: maps.Clone(d.Annotations)}
			if d.Platform != nil {
				p.OS, p.Architecture, p.Variant = d.Platform.OS, d.Platform.Architecture, d.Platform.Variant
			}
			a.Platforms = append(a.Platforms, p)
		}
	}
	return a, cm, nil
}

func manifestKey(r ref.Ref, dig string) string { return r.Registry + "/" + r.Repository + "@" + dig }

// fetchManifest GETs r's manifest, by digest when r has one, unless it is cached.
func (c *Client) fetchManifest(ctx context.Context, r ref.Ref) (*cachedManifest, error) {
	var cm *cachedManifest
	if r.Digest != "" {
		var ok bool
		if cm, ok = c.manifests.get(manifestKey(r, r.Digest)); ok {
			return cm, nil
		}
		var err error
		if cm, _, err = c.direct.manifest(ctx, r); err != nil {
			return nil, mapErr(err)
		}
	}
	if cm == nil {
		m, err := c.rc.ManifestGet(ctx, r)
		if err != nil {
			return nil, mapErr(err)
		}
		cm = &cachedManifest{}
		if cm.m, err = manifestFields(m); err != nil {
			return nil, err
		}
		if cm.raw, err = m.RawBody(); err != nil {
			return nil, err
		}
		d := m.GetDescriptor()
		cm.desc = Descriptor{Digest: d.Digest.String(), MediaType: d.MediaType, Size: d.Size}
		if cm.desc.MediaType == "" {
			cm.desc.MediaType = cm.m.MediaType
		}
	}
	c.manifests.put(manifestKey(r, cm.desc.Digest), cm)
	c.bodies.put(r.Registry+"@"+cm.desc.Digest, cm)
	if ce := c.log.Check(zap.DebugLevel, "read manifest"); ce != nil {
		ce.Write(zap.String(logging.FieldRepository, r.Registry+"/"+r.Repository), zap.String(logging.FieldDigest, cm.desc.Digest))
	}
	return cm, nil
}

// configJSON is the part of an image config the client reads.
type configJSON struct {
	Created      string `json:"created"`
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
	Config       struct {
		User         string              `json:"User"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Labels       map[string]string   `json:"Labels"`
	} `json:"config"`
}

// imageConfig is what the client keeps of an image config.
type imageConfig struct {
	os, arch, variant string
	created           time.Time
	user              string
	ports             []string
	labels            map[string]string
}

// fill copies the config into p; the index's platform, when p has one, wins over the config's.
func (ic *imageConfig) fill(p *Platform) {
	if p.OS == "" && p.Architecture == "" {
		p.OS, p.Architecture, p.Variant = ic.os, ic.arch, ic.variant
	}
	p.Created = ic.created
	p.User = ic.user
	p.ExposedPorts = slices.Clone(ic.ports)
	p.Labels = maps.Clone(ic.labels)
}

// config GETs an image config blob unless it is cached.
func (c *Client) config(ctx context.Context, r ref.Ref, d descJSON) (*imageConfig, error) {
	if ic, ok := c.configs.get(d.Digest); ok {
		return ic, nil
	}
	if d.Size > maxConfigSize {
		return nil, fmt.Errorf("image config %s is %d bytes, over the limit of %d", d.Digest, d.Size, maxConfigSize)
	}
	if !imageref.IsDigest(d.Digest) {
		if _, err := digest.Parse(d.Digest); err != nil {
			return nil, fmt.Errorf("image config digest %q: %w", d.Digest, err)
		}
	}
	body, ok, err := c.direct.blob(ctx, r, d, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("reading image config %s: %w", d.Digest, mapErr(err))
	}
	if !ok {
		if body, err = c.readConfig(ctx, r, d); err != nil {
			return nil, err
		}
	}
	var img configJSON
	if err := json.Unmarshal(body, &img); err != nil {
		return nil, fmt.Errorf("decoding image config %s: %w", d.Digest, err)
	}
	ic := &imageConfig{
		os: img.OS, arch: img.Architecture, variant: img.Variant,
		user:   img.Config.User,
		labels: img.Config.Labels,
	}
	if t, err := time.Parse(time.RFC3339Nano, img.Created); err == nil {
		ic.created = t
	}
	for p := range img.Config.ExposedPorts {
		ic.ports = append(ic.ports, p)
	}
	slices.Sort(ic.ports)
	c.configs.put(d.Digest, ic)
	return ic, nil
}

// platforms reads each platform of an index: its manifest and its config, concurrently (regclient bounds
// the requests per host). Entries that turn out not to be images (an unannotated attestation, an artifact)
// are left out.
// readConfig reads an image config with regclient.
func (c *Client) readConfig(ctx context.Context, r ref.Ref, d descJSON) ([]byte, error) {
	rd, err := c.rc.BlobGet(ctx, r, descriptor.Descriptor{MediaType: d.MediaType, Digest: digest.Digest(d.Digest), Size: d.Size})
	if err != nil {
		return nil, fmt.Errorf("reading image config %s: %w", d.Digest, mapErr(err))
	}
	defer rd.Close()
	// Reading to the end verifies the size and the digest.
	body := bytes.NewBuffer(make([]byte, 0, d.Size+bytes.MinRead))
	if _, err := body.ReadFrom(io.LimitReader(rd, maxConfigSize+1)); err != nil {
		return nil, fmt.Errorf("reading image config %s: %w", d.Digest, mapErr(err))
	}
	return body.Bytes(), nil
}

func (c *Client) platforms(ctx context.Context, r ref.Ref, children []descJSON) ([]Platform, error) {
	out := make([]*Platform, len(children))
	g, ctx := errgroup.WithContext(ctx)
	for i, d := range children {
		if skipChild(d) {
			continue
		}
		g.Go(func() error {
			p, err := c.platform(ctx, r, d)
			out[i] = p
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	ps := make([]Platform, 0, len(children))
	for _, p := range out {
		if p != nil {
			ps = append(ps, *p)
		}
	}
	return ps, nil
}

func (c *Client) platform(ctx context.Context, r ref.Ref, d descJSON) (*Platform, error) {
	cr := r.SetDigest(d.Digest)
	cm, err := c.fetchManifest(ctx, cr)
	if err != nil {
		return nil, fmt.Errorf("platform %s: %w", d.Digest, err)
	}
	if kind, _, _ := classify(cm.desc.MediaType, &cm.m, ""); kind != KindImage || cm.m.Config == nil {
		return nil, nil
	}
	p := &Platform{Digest: d.Digest, Annotations: maps.Clone(d.Annotations)}
	if p.Annotations == nil && len(cm.m.Annotations) > 0 {
		p.Annotations = map[string]string{}
	}
	maps.Copy(p.Annotations, cm.m.Annotations)
	if d.Platform != nil {
		p.OS, p.Architecture, p.Variant = d.Platform.OS, d.Platform.Architecture, d.Platform.Variant
	}
	cfg, err := c.config(ctx, cr, *cm.m.Config)
	if err != nil {
		return nil, fmt.Errorf("platform %s: %w", d.Digest, err)
	}
	cfg.fill(p)
	return p, nil
}
