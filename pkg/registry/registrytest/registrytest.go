// Package registrytest runs a real OCI registry (olareg, in memory) inside a test and pushes test content
// built in code: labelled images (optionally built on another image, with files of a directory tree, with
// layers of entries with owners and modes, whose files may be pseudo-random bytes of a chosen seed, or with a
// large random layer), multi-platform indexes with buildx-style attestations, cosign signatures and
// attestations, SBOM referrers and non-image artifacts. It can make the registry answer 429 or 503 with
// Retry-After, drop connections, require basic auth, serve TLS, and page tag lists, so that stages can be
// tested against the failures they must survive. It counts the blob bytes it serves, reads content back
// without counting it, and writes images to OCI layouts.
//
// Content is pushed through a second, plain listener on the same store, so pushes are not seen by the
// fault injection, the authentication or the middleware of the listener under test.
package registrytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/olareg/olareg"
	oconfig "github.com/olareg/olareg/config"
	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/registry"
)

// Media types of the content this package pushes.
const (
	MediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaOCIEmpty       = "application/vnd.oci.empty.v1+json"
	MediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaCosignSign     = "application/vnd.dev.cosign.simplesigning.v1+json"
	MediaDSSE           = "application/vnd.dsse.envelope.v1+json"
	MediaInToto         = "application/vnd.in-toto+json"
	MediaSPDX           = "application/spdx+json"
	MediaHelmConfig     = "application/vnd.cncf.helm.config.v1+json"
	MediaHelmChart      = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// Registry is a running test registry.
type Registry struct {
	// Host is host:port of the listener under test, as in a reference (Host + "/repo:tag").
	Host string
	// URL is its base URL (http:// or https://).
	URL string

	srv, admin *httptest.Server
	store      *olareg.Server
	pusher     *regclient.RegClient
	adminHost  string
	caFile     string
	opts       options

	closeOnce sync.Once
	mu        sync.Mutex
	failN     int
	failCode  int
	failAfter string
	down      atomic.Bool
	served    atomic.Int64
	blobBytes atomic.Int64
}

type options struct {
	tls        bool
	user, pass string
	token      bool
	pageSize   int
	mws        []func(http.Handler) http.Handler
}

// Option configures a Registry.
type Option func(*options)

// WithTLS serves the listener under test over TLS with a certificate from httptest; Config names it in
// ca_file.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithBasicAuth makes the listener under test require basic auth with user and pass, answering 401 with a
// Basic challenge otherwise. Config carries the credentials.
func WithBasicAuth(user, pass string) Option {
	return func(o *options) { o.user, o.pass = user, pass }
}

// WithTokenAuth makes the registry require a bearer token from its token service, as Harbor and Docker Hub
// do: a request without one gets 401 with a Bearer challenge whose realm is the token service, which hands
// out tokens for user and pass. The token service is on the push listener (another host:port, like
// auth.docker.io), so the middleware of the listener under test does not see token requests. Config carries
// the credentials.
func WithTokenAuth(user, pass string) Option {
	return func(o *options) { o.user, o.pass, o.token = user, pass, true }
}

// WithTagPageSize makes tag lists come in pages of n, linked with Link rel="next", as Harbor and Docker Hub
// do, when the client does not ask for a page size itself.
func WithTagPageSize(n int) Option { return func(o *options) { o.pageSize = n } }

// WithMiddleware wraps the listener under test; the first middleware given is outermost, and every
// middleware sees every request, including those the registry then fails.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(o *options) { o.mws = append(o.mws, mw) }
}

// New starts a registry with an empty in-memory store and stops it when the test ends.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{}
	for _, o := range opts {
		o(&r.opts)
	}
	r.admin = httptest.NewUnstartedServer(nil)
	r.adminHost = r.admin.Listener.Addr().String()
	deletes := true // DeleteTag, and registries that allow deleting manifests as Harbor does
	conf := oconfig.Config{Storage: oconfig.ConfigStorage{StoreType: oconfig.StoreMem}, API: oconfig.ConfigAPI{DeleteEnabled: &deletes}}
	if r.opts.token {
		conf.Auth = tokenAuth(t, "http://"+r.adminHost+"/token", r.opts.user, r.opts.pass)
	}
	r.store = olareg.New(conf)
	r.admin.Config.Handler = r.store
	r.admin.Start()

	var h http.Handler = r.countBlobBytes(r.store)
	if r.opts.pageSize > 0 {
		h = pageTags(h, r.opts.pageSize)
	}
	if !r.opts.token && (r.opts.user != "" || r.opts.pass != "") {
		h = basicAuth(h, r.opts.user, r.opts.pass)
	}
	h = r.faults(h)
	for i := len(r.opts.mws) - 1; i >= 0; i-- {
		h = r.opts.mws[i](h)
	}
	r.srv = httptest.NewUnstartedServer(h)
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	if r.opts.tls {
		r.srv.StartTLS()
		r.caFile = filepath.Join(t.TempDir(), "ca.pem")
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
		if err := os.WriteFile(r.caFile, certPEM, 0o600); err != nil {
			t.Fatalf("writing the test registry's CA: %v", err)
		}
	} else {
		r.srv.Start()
	}
	u, _ := url.Parse(r.srv.URL)
	r.Host, r.URL = u.Host, r.srv.URL
	pushHost := rcconfig.Host{Name: r.adminHost, TLS: rcconfig.TLSDisabled}
	if r.opts.token {
		pushHost.User, pushHost.Pass = r.opts.user, r.opts.pass
	}
	r.pusher = regclient.New(regclient.WithConfigHost(pushHost))
	t.Cleanup(r.Close)
	return r
}

// Close stops the registry: from then on connections to Host are refused. It may be called more than once.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.srv.Close()
		r.admin.Close()
		_ = r.store.Close()
	})
}

// Config is the registries: entry harborflow needs for this registry: plain_http, or ca_file with TLS, and
// the credentials of WithBasicAuth or WithTokenAuth.
func (r *Registry) Config() config.Registry {
	c := config.Registry{Host: r.Host, Username: r.opts.user, Password: config.Secret(r.opts.pass)}
	if r.opts.tls {
		c.CAFile = r.caFile
	} else {
		c.PlainHTTP = true
	}
	return c
}

// Settings is the registry client's settings for this registry (Config as registry.Host).
func (r *Registry) Settings() registry.Host { return r.Config().RegistryHost() }

// CAFile is the PEM file of the TLS listener's certificate ("" without WithTLS).
func (r *Registry) CAFile() string { return r.caFile }

// Ref returns Host + "/" + s.
func (r *Registry) Ref(s string) string { return r.Host + "/" + s }

// Served is how many requests the listener under test has received, failed ones included.
func (r *Registry) Served() int64 { return r.served.Load() }

// BlobBytesServed is how many bytes of blob content (bodies of successful GETs of /v2/<name>/blobs/<digest>)
// the listener under test has sent, whoever the client. Reads with ReadBlob and WriteLayout are not counted.
func (r *Registry) BlobBytesServed() int64 { return r.blobBytes.Load() }

// countBlobBytes counts the bytes of blob GET answers into blobBytes.
func (r *Registry) countBlobBytes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.Path
		if req.Method != http.MethodGet || !strings.HasPrefix(p, "/v2/") || strings.LastIndex(p, "/blobs/") <= len("/v2") ||
			strings.Contains(p, "/blobs/uploads") {
			next.ServeHTTP(w, req)
			return
		}
		next.ServeHTTP(&countingWriter{ResponseWriter: w, n: &r.blobBytes, status: http.StatusOK}, req)
	})
}

// countingWriter counts the body bytes of a successful answer.
type countingWriter struct {
	http.ResponseWriter
	n      *atomic.Int64
	status int
}

func (w *countingWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	if w.status >= 200 && w.status < 300 {
		w.n.Add(int64(n))
	}
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Fail makes the next n requests answer status, with a Retry-After header when retryAfter is not empty.
func (r *Registry) Fail(n, status int, retryAfter string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failN, r.failCode, r.failAfter = n, status, retryAfter
}

// RateLimit makes the next n requests answer 429 with Retry-After retryAfter ("" for none).
func (r *Registry) RateLimit(n int, retryAfter string) {
	r.Fail(n, http.StatusTooManyRequests, retryAfter)
}

// SetDown makes the listener drop every connection without an answer (true) or serve again (false).
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

func (r *Registry) faults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.served.Add(1)
		if r.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		r.mu.Lock()
		fail := r.failN > 0
		code, after := r.failCode, r.failAfter
		if fail {
			r.failN--
		}
		r.mu.Unlock()
		if fail {
			if after != "" {
				w.Header().Set("Retry-After", after)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected %d"}]}`, code)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// tokenAuth is olareg's opaque token service with one user who may do anything.
func tokenAuth(t testing.TB, realm, user, pass string) oconfig.ConfigAuth {
	t.Helper()
	hash, err := oconfig.PassHash(pass, oconfig.PassAlgoDefault)
	if err != nil {
		t.Fatalf("test registry: hashing the password: %v", err)
	}
	conf := fmt.Sprintf("users:\n  %q:\n    cred: %q\nacls:\n  - repo: \"*\"\n    access: [\"*\"]\n    members: [%q]\n", user, hash, user)
	file := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatalf("test registry: writing the auth file: %v", err)
	}
	return oconfig.NewAuthTokenOpaque(file, oconfig.WithAuthRealm(realm))
}

func basicAuth(next http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		next.ServeHTTP(w, req)
	})
}

func pageTags(next http.Handler, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/tags/list") && !req.URL.Query().Has("n") {
			req = req.Clone(req.Context())
			q := req.URL.Query()
			q.Set("n", strconv.Itoa(n))
			req.URL.RawQuery = q.Encode()
		}
		next.ServeHTTP(w, req)
	})
}

// Image describes a single-platform image to push.
type Image struct {
	// Platform is os/arch[/variant] (default linux/amd64).
	Platform string
	// Labels go into the config's Labels.
	Labels map[string]string
	// Annotations go into the manifest.
	Annotations map[string]string
	// User and ExposedPorts ("9443/tcp") go into the config.
	User         string
	ExposedPorts []string
	// Created is the config's creation time (default 2024-01-01T00:00:00Z, so equal images are equal).
	Created time.Time
	// Layer is the content of the one file in the image's own layer (default: made from the platform and
	// labels).
	Layer string
	// Files, when not empty, make the image's own layer instead of Layer: path in the image → content, as
	// regular files of mode 0644 in path order, without directory entries.
	Files map[string]string
	// Entries, when not empty, make the image's own layers instead of Layer and Files: one layer per element,
	// holding its entries in the order given (directories, links, files with their owners and modes, and
	// whiteouts named .wh.<name>), as an OS layer and a product layer of a real base.
	Entries [][]Entry
	// LayerSize, when over zero, adds a second own layer holding one file of that many pseudo-random
	// (incompressible) bytes, the same for the same size and platform: for benchmarks of data transfer.
	LayerSize int
	// Base is an image pushed earlier by this Registry (a Pushed of PushImage, or an image of PushIndex's
	// Children) that this image is built on, as FROM builds one: the base's layers, diff IDs and history
	// entries come first. The base's layers are pushed to this image's repository too.
	Base *Pushed
	// Docker pushes Docker schema 2 media types instead of OCI ones.
	Docker bool
}

// Entry is one tar entry of Image.Entries.
type Entry struct {
	// Name is the path in the image ("home/wso2carbon"; a directory may end in "/").
	Name string
	// Type is tar.TypeDir, tar.TypeReg (the default) or tar.TypeSymlink.
	Type byte
	// Mode is the permission bits with setuid, setgid and sticky (default 0755 for a directory, 0644 for a file,
	// 0777 for a link).
	Mode     int64
	UID, GID int
	// Link is a symbolic link's target; Content a file's.
	Link, Content string
	// ModTime defaults to the Unix epoch.
	ModTime time.Time
}

// Dir is a directory of Entries.
func Dir(name string, mode int64, uid, gid int) Entry {
	return Entry{Name: name, Type: tar.TypeDir, Mode: mode, UID: uid, GID: gid}
}

// File is a regular file of Entries.
func File(name, content string, mode int64, uid, gid int) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, UID: uid, GID: gid, Content: content}
}

// RandomFile is a regular file of Entries holding size pseudo-random (incompressible) bytes made from seed: the
// same seed and size give the same content, and so the same layer, while another seed gives a new layer of the
// same size (a new product build, for benchmarks of data transfer).
func RandomFile(name string, size int, seed uint64, mode int64, uid, gid int) Entry {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(data)
	return File(name, string(data), mode, uid, gid)
}

// Link is a symbolic link of Entries.
func Link(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target}
}

// tarGzEntries returns a gzipped tar of entries, in order, and the digest of the uncompressed tar.
func tarGzEntries(t testing.TB, entries []Entry) ([]byte, string) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID, Linkname: e.Link,
			ModTime: e.ModTime, Format: tar.FormatPAX}
		if hdr.ModTime.IsZero() {
			hdr.ModTime = time.Unix(0, 0).UTC()
		}
		switch e.Type {
		case tar.TypeDir:
			if !strings.HasSuffix(hdr.Name, "/") {
				hdr.Name += "/"
			}
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		case tar.TypeSymlink:
			if hdr.Mode == 0 {
				hdr.Mode = 0o777
			}
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.Content))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("test registry: tar: %v", err)
		}
		if _, err := tw.Write([]byte(e.Content)); err != nil {
			t.Fatalf("test registry: tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("test registry: tar: %v", err)
	}
	return gzipTar(t, tarBuf.Bytes(), gzip.DefaultCompression)
}

// WSO2Layers are the layers of a WSO2-shaped base for Image.Entries: a usr-merged OS layer (/lib is a link to
// usr/lib, /tmp 1777) and a product layer whose home directory belongs to wso2carbon (802:802, mode 0750), with
// its security directory 0700, a product directory with a sub-second modification time, a setgid conf
// directory, and a file holding level — so that a new level is a new product layer on the same OS layer.
func WSO2Layers(level string) [][]Entry {
	productTime := time.Date(2024, 6, 1, 10, 0, 0, 500, time.UTC)
	product := []Entry{
		Dir("home/wso2carbon", 0o750, 802, 802),
		Dir("home/wso2carbon/security", 0o700, 802, 802),
		File("home/wso2carbon/security/wso2carbon.jks", "keystore", 0o600, 802, 802),
		{Name: "home/wso2carbon/wso2am-4.2.0", Type: tar.TypeDir, Mode: 0o755, UID: 802, GID: 802, ModTime: productTime},
		Dir("home/wso2carbon/wso2am-4.2.0/bin", 0o750, 802, 802),
		File("home/wso2carbon/wso2am-4.2.0/bin/api-manager.sh", "#!/bin/sh\n", 0o750, 802, 802),
		Dir("home/wso2carbon/wso2am-4.2.0/repository", 0o755, 802, 802),
		Dir("home/wso2carbon/wso2am-4.2.0/repository/conf", 0o2750, 802, 802),
		File("home/wso2carbon/wso2am-4.2.0/repository/conf/deployment.toml", "[server]\n", 0o640, 802, 802),
		File("home/wso2carbon/wso2am-4.2.0/updates/level", level, 0o644, 802, 802),
	}
	os := []Entry{
		Dir("etc", 0o755, 0, 0),
		File("etc/os-release", "ID=debian\n", 0o644, 0, 0),
		Dir("home", 0o755, 0, 0),
		Link("lib", "usr/lib"),
		Dir("tmp", 0o1777, 0, 0),
		Dir("usr", 0o755, 0, 0),
		Dir("usr/lib", 0o755, 0, 0),
		File("usr/lib/libc.so", "ELF", 0o755, 0, 0),
	}
	return [][]Entry{os, product}
}

// Index describes a multi-platform image to push.
type Index struct {
	Images []Image
	// Attestations adds, per image, a buildx attestation manifest (platform unknown/unknown).
	Attestations bool
	// Annotations go into the index.
	Annotations map[string]string
	// Docker pushes a Docker manifest list (and Docker images) instead of an OCI index.
	Docker bool
}

// Pushed is what was pushed.
type Pushed struct {
	// Ref is Host/repository@digest, Tag the tag it was pushed under ("" when pushed by digest).
	Ref, Tag string
	// Digest, MediaType and Size describe the manifest.
	Digest    string
	MediaType string
	Size      int64
	// Config is the config blob's digest.
	Config string
	// Layers are an image's layer digests, its base's first.
	Layers []string
	// Children are an index's images, then its attestation manifests.
	Children []Pushed

	layers []layerBlob // an image's layers, for images built on it
}

// layerBlob is a layer of an image this package pushed.
type layerBlob struct {
	gz      []byte
	diffID  string
	history map[string]any
}

// PushImage pushes img to repoTag ("repo:tag", or "repo" to push by digest only).
func (r *Registry) PushImage(t testing.TB, repoTag string, img Image) Pushed {
	t.Helper()
	return r.pushImage(t, repoTag, img)
}

func (r *Registry) pushImage(t testing.TB, repoTag string, img Image) Pushed {
	t.Helper()
	goos, arch, variant := splitPlatform(img.Platform)
	created := img.Created
	if created.IsZero() {
		created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	var layers []layerBlob
	if img.Base != nil {
		if len(img.Base.layers) == 0 {
			t.Fatalf("test registry: base %s is not an image this package pushed", img.Base.Ref)
		}
		layers = append(layers, img.Base.layers...)
	}
	own := map[string]any{"created": created.Format(time.RFC3339), "created_by": "registrytest: files"}
	switch {
	case len(img.Entries) > 0:
		for i, entries := range img.Entries {
			gz, diffID := tarGzEntries(t, entries)
			layers = append(layers, layerBlob{gz: gz, diffID: diffID, history: map[string]any{
				"created": created.Format(time.RFC3339), "created_by": fmt.Sprintf("registrytest: entries %d", i)}})
		}
	case len(img.Files) > 0:
		gz, diffID := tarGzFiles(t, img.Files, gzip.DefaultCompression)
		layers = append(layers, layerBlob{gz: gz, diffID: diffID, history: own})
	default:
		content := img.Layer
		if content == "" {
			content = fmt.Sprintf("platform=%s labels=%v", img.Platform, img.Labels)
		}
		gz, diffID := tarGz(t, "hello.txt", content)
		layers = append(layers, layerBlob{gz: gz, diffID: diffID, history: own})
	}
	if img.LayerSize > 0 {
		seed := sha256.Sum256(fmt.Appendf(nil, "%s/%d", img.Platform, img.LayerSize))
		data := make([]byte, img.LayerSize)
		_, _ = rand.NewChaCha8(seed).Read(data)
		gz, diffID := tarGzFiles(t, map[string]string{"random.bin": string(data)}, gzip.NoCompression)
		layers = append(layers, layerBlob{gz: gz, diffID: diffID, history: map[string]any{
			"created": created.Format(time.RFC3339), "created_by": fmt.Sprintf("registrytest: %d random bytes", img.LayerSize)}})
	}
	diffIDs := make([]string, len(layers))
	history := make([]any, len(layers))
	for i, l := range layers {
		diffIDs[i], history[i] = l.diffID, l.history
	}
	ports := map[string]struct{}{}
	for _, p := range img.ExposedPorts {
		ports[p] = struct{}{}
	}
	cfg := map[string]any{
		"created":      created.Format(time.RFC3339),
		"architecture": arch,
		"os":           goos,
		"config":       map[string]any{"Labels": img.Labels, "User": img.User, "ExposedPorts": ports},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      history,
	}
	if variant != "" {
		cfg["variant"] = variant
	}
	cfgJSON := mustJSON(t, cfg)
	mt, cmt, lmt := MediaOCIManifest, MediaOCIConfig, MediaOCILayer
	if img.Docker {
		mt, cmt, lmt = MediaDockerManifest, MediaDockerConfig, MediaDockerLayer
	}
	layerDescs := make([]any, len(layers))
	blobs := [][]byte{cfgJSON}
	var layerDigests []string
	for i, l := range layers {
		layerDescs[i] = desc(lmt, l.gz)
		blobs = append(blobs, l.gz)
		layerDigests = append(layerDigests, digest.FromBytes(l.gz).String())
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mt,
		"config":        desc(cmt, cfgJSON),
		"layers":        layerDescs,
	}
	if len(img.Annotations) > 0 {
		m["annotations"] = img.Annotations
	}
	p := r.PushRaw(t, repoTag, mt, mustJSON(t, m), blobs...)
	p.Config = digest.FromBytes(cfgJSON).String()
	p.Layers = layerDigests
	p.layers = layers
	return p
}

// PushIndex pushes each image by digest, then the index to repoTag.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx Index) Pushed {
	t.Helper()
	repo, _ := splitRepoTag(repoTag)
	mt := MediaOCIIndex
	if idx.Docker {
		mt = MediaDockerList
	}
	var children, attestations []Pushed
	var entries, attEntries []any
	for _, img := range idx.Images {
		img.Docker = img.Docker || idx.Docker
		c := r.pushImage(t, repo, img)
		children = append(children, c)
		goos, arch, variant := splitPlatform(img.Platform)
		plat := map[string]string{"os": goos, "architecture": arch}
		if variant != "" {
			plat["variant"] = variant
		}
		entries = append(entries, map[string]any{"mediaType": c.MediaType, "digest": c.Digest, "size": c.Size, "platform": plat})
		if idx.Attestations {
			a := r.pushBuildxAttestation(t, repo, c)
			attestations = append(attestations, a)
			attEntries = append(attEntries, map[string]any{
				"mediaType": a.MediaType, "digest": a.Digest, "size": a.Size,
				"platform": map[string]string{"os": "unknown", "architecture": "unknown"},
				"annotations": map[string]string{
					"vnd.docker.reference.digest": c.Digest,
					"vnd.docker.reference.type":   "attestation-manifest",
				},
			})
		}
	}
	m := map[string]any{"schemaVersion": 2, "mediaType": mt, "manifests": append(entries, attEntries...)}
	if len(idx.Annotations) > 0 {
		m["annotations"] = idx.Annotations
	}
	p := r.PushRaw(t, repoTag, mt, mustJSON(t, m))
	p.Children = append(children, attestations...)
	return p
}

// pushBuildxAttestation pushes an attestation manifest as buildx makes them: an image config for
// unknown/unknown and an in-toto SPDX statement.
func (r *Registry) pushBuildxAttestation(t testing.TB, repo string, subject Pushed) Pushed {
	t.Helper()
	stmt := mustJSON(t, map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": "https://spdx.dev/Document",
		"subject":       []any{map[string]any{"name": "pkg:docker/" + repo, "digest": map[string]string{"sha256": strings.TrimPrefix(subject.Digest, "sha256:")}}},
		"predicate":     map[string]any{"spdxVersion": "SPDX-2.3"},
	})
	cfg := mustJSON(t, map[string]any{"architecture": "unknown", "os": "unknown", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(stmt).String()}}})
	layer := desc(MediaInToto, stmt)
	layer["annotations"] = map[string]string{"in-toto.io/predicate-type": "https://spdx.dev/Document"}
	m := map[string]any{"schemaVersion": 2, "mediaType": MediaOCIManifest, "config": desc(MediaOCIConfig, cfg), "layers": []any{layer}}
	return r.PushRaw(t, repo, MediaOCIManifest, mustJSON(t, m), cfg, stmt)
}

// PushSignature pushes a cosign signature of subject under cosign's tag sha256-<hex>.sig: an image
// manifest whose layer is a simple-signing payload.
func (r *Registry) PushSignature(t testing.TB, repo string, subject Pushed) Pushed {
	t.Helper()
	payload := mustJSON(t, map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": r.Host + "/" + repo},
			"image":    map[string]string{"docker-manifest-digest": subject.Digest},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	layer := desc(MediaCosignSign, payload)
	layer["annotations"] = map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQDtest"}
	return r.pushCosign(t, repo, subject, "sig", layer, payload)
}

// PushAttestation pushes a cosign attestation of subject under sha256-<hex>.att: a DSSE envelope layer whose
// in-toto statement names subject, so that, as cosign's, the attestations of two images differ.
func (r *Registry) PushAttestation(t testing.TB, repo string, subject Pushed) Pushed {
	t.Helper()
	stmt := mustJSON(t, map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject":       []any{map[string]any{"name": r.Host + "/" + repo, "digest": map[string]string{"sha256": strings.TrimPrefix(subject.Digest, "sha256:")}}},
		"predicate":     map[string]any{},
	})
	envelope := mustJSON(t, map[string]any{"payloadType": "application/vnd.in-toto+json", "payload": base64.StdEncoding.EncodeToString(stmt),
		"signatures": []any{}})
	layer := desc(MediaDSSE, envelope)
	layer["annotations"] = map[string]string{"predicateType": "https://slsa.dev/provenance/v0.2"}
	return r.pushCosign(t, repo, subject, "att", layer, envelope)
}

func (r *Registry) pushCosign(t testing.TB, repo string, subject Pushed, suffix string, layer map[string]any, content []byte) Pushed {
	t.Helper()
	cfg := mustJSON(t, map[string]any{"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(content).String()}}})
	m := map[string]any{"schemaVersion": 2, "mediaType": MediaOCIManifest, "config": desc(MediaOCIConfig, cfg), "layers": []any{layer}}
	tag := strings.Replace(subject.Digest, ":", "-", 1) + "." + suffix
	return r.PushRaw(t, repo+":"+tag, MediaOCIManifest, mustJSON(t, m), cfg, content)
}

// PushSBOM pushes an SPDX SBOM as an OCI referrer of subject (artifactType application/spdx+json, a subject,
// no tag).
func (r *Registry) PushSBOM(t testing.TB, repo string, subject Pushed) Pushed {
	t.Helper()
	sbom := mustJSON(t, map[string]any{"spdxVersion": "SPDX-2.3", "name": subject.Digest})
	empty := []byte("{}")
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaOCIManifest,
		"artifactType":  MediaSPDX,
		"config":        desc(MediaOCIEmpty, empty),
		"layers":        []any{desc(MediaSPDX, sbom)},
		"subject":       map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest, "size": subject.Size},
	}
	return r.PushRaw(t, repo, MediaOCIManifest, mustJSON(t, m), empty, sbom)
}

// PushReferrer pushes an artifact of artifactType that refers to subject, untagged.
func (r *Registry) PushReferrer(t testing.TB, repo, artifactType string, subject Pushed) Pushed {
	t.Helper()
	empty := []byte("{}")
	body := []byte("referrer of " + subject.Digest)
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaOCIManifest,
		"artifactType":  artifactType,
		"config":        desc(MediaOCIEmpty, empty),
		"layers":        []any{desc("text/plain", body)},
		"subject":       map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest, "size": subject.Size},
	}
	return r.PushRaw(t, repo, MediaOCIManifest, mustJSON(t, m), empty, body)
}

// PushHelmChart pushes a Helm chart: an OCI manifest with the Helm config media type.
func (r *Registry) PushHelmChart(t testing.TB, repoTag string) Pushed {
	t.Helper()
	cfg := mustJSON(t, map[string]string{"name": "chart", "version": "1.0.0", "apiVersion": "v2"})
	chart, _ := tarGz(t, "chart/Chart.yaml", "name: chart\nversion: 1.0.0\n")
	m := map[string]any{"schemaVersion": 2, "mediaType": MediaOCIManifest, "config": desc(MediaHelmConfig, cfg),
		"layers": []any{desc(MediaHelmChart, chart)}}
	return r.PushRaw(t, repoTag, MediaOCIManifest, mustJSON(t, m), cfg, chart)
}

// PushRaw pushes blobs, then the manifest body of mediaType to repoTag ("repo:tag", or "repo" for by digest
// only).
func (r *Registry) PushRaw(t testing.TB, repoTag, mediaType string, body []byte, blobs ...[]byte) Pushed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo, tag := splitRepoTag(repoTag)
	dig := digest.FromBytes(body)
	rf, err := ref.New(r.adminHost + "/" + repo)
	if err != nil {
		t.Fatalf("test registry: reference %s: %v", repoTag, err)
	}
	for _, b := range blobs {
		d := descriptor.Descriptor{Digest: digest.FromBytes(b), Size: int64(len(b))}
		if _, err := r.pusher.BlobPut(ctx, rf, d, bytes.NewReader(b)); err != nil {
			t.Fatalf("test registry: pushing blob to %s: %v", repo, err)
		}
	}
	m, err := manifest.New(manifest.WithRaw(body), manifest.WithDesc(descriptor.Descriptor{MediaType: mediaType}))
	if err != nil {
		t.Fatalf("test registry: manifest for %s: %v", repoTag, err)
	}
	target := rf.SetDigest(dig.String())
	if tag != "" {
		target = rf.SetTag(tag)
	}
	if err := r.pusher.ManifestPut(ctx, target, m); err != nil {
		t.Fatalf("test registry: pushing manifest %s: %v", repoTag, err)
	}
	return Pushed{Ref: r.Host + "/" + repo + "@" + dig.String(), Tag: tag, Digest: dig.String(), MediaType: mediaType, Size: int64(len(body))}
}

func splitRepoTag(s string) (repo, tag string) {
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		return s[:i], s[i+1:]
	}
	return s, ""
}

func splitPlatform(p string) (goos, arch, variant string) {
	if p == "" {
		p = "linux/amd64"
	}
	parts := strings.SplitN(p, "/", 3)
	goos = parts[0]
	if len(parts) > 1 {
		arch = parts[1]
	}
	if len(parts) > 2 {
		variant = parts[2]
	}
	return goos, arch, variant
}

func desc(mediaType string, content []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest.FromBytes(content).String(), "size": len(content)}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("test registry: encoding JSON: %v", err)
	}
	return b
}

// tarGz returns a gzipped tar with one file, and the digest of the uncompressed tar (the diff ID).
func tarGz(t testing.TB, name, content string) ([]byte, string) {
	t.Helper()
	return tarGzFiles(t, map[string]string{name: content}, gzip.DefaultCompression)
}

// tarGzFiles returns a gzipped tar (at level) with files (path → content) in path order, and the digest of
// the uncompressed tar (the diff ID).
func tarGzFiles(t testing.TB, files map[string]string, level int) ([]byte, string) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("test registry: tar: %v", err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatalf("test registry: tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("test registry: tar: %v", err)
	}
	return gzipTar(t, tarBuf.Bytes(), level)
}

// gzipTar gzips an uncompressed tar at level and returns it with the tar's digest (the diff ID).
func gzipTar(t testing.TB, tarBytes []byte, level int) ([]byte, string) {
	t.Helper()
	var gzBuf bytes.Buffer
	gw, err := gzip.NewWriterLevel(&gzBuf, level)
	if err != nil {
		t.Fatalf("test registry: gzip: %v", err)
	}
	if _, err := gw.Write(tarBytes); err != nil {
		t.Fatalf("test registry: gzip: %v", err)
	}
	if err := gw.Close(); err != nil {
		t.Fatalf("test registry: gzip: %v", err)
	}
	sum := sha256.Sum256(tarBytes)
	return gzBuf.Bytes(), fmt.Sprintf("sha256:%x", sum)
}

// DeleteTag removes the tag of repoTag ("repo:tag") from the registry; the manifest it pointed to stays.
func (r *Registry) DeleteTag(t testing.TB, repoTag string) {
	t.Helper()
	rf, err := ref.New(r.adminHost + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pusher.TagDelete(context.Background(), rf); err != nil {
		t.Fatalf("deleting tag %s: %v", repoTag, err)
	}
}

// DeleteManifest removes the manifest of repoRef ("repo@digest") and the tags pointing to it.
func (r *Registry) DeleteManifest(t testing.TB, repoRef string) {
	t.Helper()
	rf, err := ref.New(r.adminHost + "/" + repoRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.pusher.ManifestDelete(context.Background(), rf); err != nil {
		t.Fatalf("deleting manifest %s: %v", repoRef, err)
	}
}

// ReadManifest reads the manifest of repoRef ("repo:tag" or "repo@digest") through the push listener, so
// that the listener under test does not see it: its media type and body.
func (r *Registry) ReadManifest(t testing.TB, repoRef string) (mediaType string, body []byte) {
	t.Helper()
	rf, err := ref.New(r.adminHost + "/" + repoRef)
	if err != nil {
		t.Fatalf("test registry: reference %s: %v", repoRef, err)
	}
	m, err := r.pusher.ManifestGet(context.Background(), rf)
	if err != nil {
		t.Fatalf("test registry: reading manifest %s: %v", repoRef, err)
	}
	body, err = m.RawBody()
	if err != nil {
		t.Fatalf("test registry: reading manifest %s: %v", repoRef, err)
	}
	return m.GetDescriptor().MediaType, body
}

// ReadBlob reads a blob of repo through the push listener, which BlobBytesServed does not count.
func (r *Registry) ReadBlob(t testing.TB, repo, dig string) []byte {
	t.Helper()
	rf, err := ref.New(r.adminHost + "/" + repo)
	if err != nil {
		t.Fatalf("test registry: reference %s: %v", repo, err)
	}
	rd, err := r.pusher.BlobGet(context.Background(), rf, descriptor.Descriptor{Digest: digest.Digest(dig)})
	if err != nil {
		t.Fatalf("test registry: reading blob %s of %s: %v", dig, repo, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("test registry: reading blob %s of %s: %v", dig, repo, err)
	}
	return b
}

// WriteLayout copies repoRef ("repo:tag" or "repo@digest"; an index with all its entries) into an OCI image
// layout in dir, named in index.json with the tag (or "latest"), as `buildah push IMAGE oci:DIR:TAG` would
// write it. Reads go through the push listener.
func (r *Registry) WriteLayout(t testing.TB, repoRef, dir string) {
	t.Helper()
	src, err := ref.New(r.adminHost + "/" + repoRef)
	if err != nil {
		t.Fatalf("test registry: reference %s: %v", repoRef, err)
	}
	tag := src.Tag
	if tag == "" {
		tag = "latest"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tgt := ref.Ref{Scheme: "ocidir", Path: dir}.SetTag(tag)
	if err := r.pusher.ImageCopy(ctx, src, tgt); err != nil {
		t.Fatalf("test registry: copying %s to the layout %s: %v", repoRef, dir, err)
	}
	if err := r.pusher.Close(ctx, tgt); err != nil {
		t.Fatalf("test registry: closing the layout %s: %v", dir, err)
	}
}
