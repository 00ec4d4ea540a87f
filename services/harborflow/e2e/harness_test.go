//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry"
)

// What the tests configure.
const (
	source      = "e2e"               // the distribution source: POST /webhooks/distribution/e2e
	webhookKey  = "Bearer e2e-secret" // the Authorization header the registry sends
	baseRepo    = "wso2-apim/am"      // where base images are pushed, as 4.2.0.<level>
	targetRepo  = "acme/am"           // where the recipe pushes its rebuilt images: the chain's first stage
	stagingRepo = "acme-staging/am"   // the chain's second stage, gated by non_root and allowed_ports
	chainName   = "acme-am"
	recipeName  = "acme-am"
	levelLabel  = "update_level"
	buildLabel  = "io.harborflow.build"
	mediaOCI    = "application/vnd.oci.image.manifest.v1+json"
	mediaCfg    = "application/vnd.oci.image.config.v1+json"
	mediaLayer  = "application/vnd.oci.image.layer.v1.tar+gzip"
	// The signing key (pkg/signature's test key, written by cosign generate-key-pair) and its password, which
	// harborflow reads from the environment as a user's would.
	keyDir         = "../../../pkg/signature/testdata"
	passwordEnv    = "E2E_COSIGN_PASSWORD"
	cosignPassword = "harborflow-test"
)

// env is one end-to-end setup: a distribution registry and a harborflow process whose receiver gets the
// registry's notifications, both with their files in dir.
type env struct {
	t   *testing.T
	dir string
	reg *distribution
	hf  *harborflow
}

// newEnv starts a registry and harborflow for the test, and stops both when it ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := artifactDir(t)
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	reg := startDistribution(t, dir, registryOptions{notifyURL: "http://" + httpAddr + "/webhooks/distribution/" + source, auth: webhookKey})
	cfg := writeHarborflowConfig(t, dir, reg.Host, httpAddr, natsAddr)
	hf := &harborflow{bin: harborflowBin(t), config: cfg, httpAddr: httpAddr, logPath: filepath.Join(dir, "harborflow.log")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hf.start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hf.stop)
	e := &env{t: t, dir: dir, reg: reg, hf: hf}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
	})
	return e
}

// artifactDir is where a test keeps its files: under $E2E_ARTIFACTS (kept) when set, a temporary directory
// otherwise.
func artifactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("E2E_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%s", t.Name(), time.Now().Format("20060102-150405.000")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating the artifact directory: %v", err)
	}
	t.Logf("files of this test: %s", dir)
	return dir
}

func harborflowBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HARBORFLOW_BIN")
	if bin == "" {
		t.Fatal("HARBORFLOW_BIN is not set: run these tests with `make e2e`, or set it to a built bin/harborflow")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("HARBORFLOW_BIN %q: %v", bin, err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("HARBORFLOW_BIN: %v (run `make build`)", err)
	}
	return abs
}

// freeAddr is a 127.0.0.1 address with a port nobody listened on a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond every interval until it holds, and fails the test with what cond last reported when it
// does not within timeout. cond reads the state of another process (a registry, harborflow): there is no
// event of ours to wait on.
func waitFor(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, state)
		}
		<-tick.C
	}
}

// --- the registry ---

// distribution is a running docker-registry with filesystem storage.
type distribution struct {
	// Host is the registry's host:port, as in image references.
	Host    string
	logPath string
	rc      *regclient.RegClient
}

// registryOptions configure a distribution registry.
type registryOptions struct {
	// notifyURL receives the registry's notifications (none when empty), with the Authorization header auth.
	notifyURL, auth string
	// cache turns on the in-memory blob descriptor cache (storage.cache.blobdescriptor: inmemory), as Debian's
	// /etc/docker/registry/config.yml does.
	cache bool
}

// startDistribution runs docker-registry on a free port with its storage in dir, configured by o, and waits
// until it answers /v2/.
func startDistribution(t *testing.T, dir string, o registryOptions) *distribution {
	t.Helper()
	bin := os.Getenv("DOCKER_REGISTRY")
	if bin == "" {
		bin = "docker-registry"
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("the registry binary: %v (make e2e installs the docker-registry package)", err)
	}
	host := freeAddr(t)
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
`, filepath.Join(dir, "registry"), host, hex.EncodeToString(secret))
	if o.cache {
		cfg = strings.Replace(cfg, "storage:\n", "storage:\n  cache:\n    blobdescriptor: inmemory\n", 1)
	}
	if o.notifyURL != "" {
		// Short timeout and back-off, so that a killed harborflow is retried within a second; blob events and
		// pulls are left out, as in deploy/registry.yml.
		cfg += fmt.Sprintf(`notifications:
  events:
    includereferences: true
  endpoints:
    - name: harborflow
      url: %s
      headers:
        Authorization: [%q]
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignore:
        mediatypes:
          - application/octet-stream
          - application/vnd.oci.image.layer.v1.tar+gzip
          - application/vnd.docker.image.rootfs.diff.tar.gzip
        actions: [pull]
`, o.notifyURL, o.auth)
	}
	path := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing the registry's configuration: %v", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("creating the registry's log: %v", err)
	}
	cmd := exec.Command(bin, "serve", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("docker-registry exited at start:\n%s", readFile(logPath))
		case <-deadline:
			t.Fatalf("docker-registry does not answer /v2/ after 20 s (%v):\n%s", err, readFile(logPath))
		case <-tick.C:
		}
	}
	rc := regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: host, TLS: rcconfig.TLSDisabled}),
		regclient.WithUserAgent("harborflow-e2e"))
	return &distribution{Host: host, logPath: logPath, rc: rc}
}

func (d *distribution) ref(s string) (ref.Ref, error) {
	r, err := ref.New(d.Host + "/" + s)
	if err != nil {
		return ref.Ref{}, fmt.Errorf("reference %s: %w", s, err)
	}
	return r, nil
}

// pushBase pushes a base image of update level to wso2-apim/am:4.2.0.<level>, as a vendor's CI would: an
// OS layer shared by every level, a layer with a file that differs per level, and the update level in the
// config's labels. Blobs the repository has are not pushed again (docker push does the same). It returns the
// manifest's digest.
func (d *distribution) pushBase(ctx context.Context, level int) (string, error) {
	osLayer, osDiff, err := tarGz(map[string]string{"etc/os-release": "ID=wso2-e2e\nVERSION_ID=1\n"},
		tarDir{"etc", 0, 0o755}, tarDir{"home", 0, 0o755})
	if err != nil {
		return "", err
	}
	// The product layer, as WSO2's: the home directory belongs to wso2carbon (802) and is not world-readable.
	lvLayer, lvDiff, err := tarGz(map[string]string{
		"home/wso2carbon/wso2am-4.2.0/updates/level": strconv.Itoa(level) + "\n",
	}, tarDir{"home/wso2carbon", 802, 0o750}, tarDir{"home/wso2carbon/wso2am-4.2.0", 802, 0o755})
	if err != nil {
		return "", err
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
		"config": map[string]any{"User": "802", "Labels": map[string]string{levelLabel: strconv.Itoa(level)}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{osDiff, lvDiff}},
	})
	if err != nil {
		return "", fmt.Errorf("encoding the config of level %d: %w", level, err)
	}
	body, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": mediaOCI, "config": blobDesc(mediaCfg, cfg),
		"layers": []any{blobDesc(mediaLayer, osLayer), blobDesc(mediaLayer, lvLayer)},
	})
	if err != nil {
		return "", fmt.Errorf("encoding the manifest of level %d: %w", level, err)
	}
	repo, err := d.ref(baseRepo)
	if err != nil {
		return "", err
	}
	for _, b := range [][]byte{osLayer, lvLayer, cfg} {
		desc := descriptor.Descriptor{Digest: digest.FromBytes(b), Size: int64(len(b))}
		if rd, err := d.rc.BlobHead(ctx, repo, desc); err == nil {
			_ = rd.Close()
			continue
		}
		if _, err := d.rc.BlobPut(ctx, repo, desc, bytes.NewReader(b)); err != nil {
			return "", fmt.Errorf("pushing blob %s of level %d: %w", desc.Digest, level, err)
		}
	}
	m, err := manifest.New(manifest.WithRaw(body), manifest.WithDesc(descriptor.Descriptor{MediaType: mediaOCI}))
	if err != nil {
		return "", fmt.Errorf("the manifest of level %d: %w", level, err)
	}
	tag := fmt.Sprintf("4.2.0.%d", level)
	if err := d.rc.ManifestPut(ctx, repo.SetTag(tag), m); err != nil {
		return "", fmt.Errorf("pushing %s:%s: %w", baseRepo, tag, err)
	}
	return digest.FromBytes(body).String(), nil
}

func blobDesc(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest.FromBytes(b).String(), "size": len(b)}
}

// tarDir is a directory entry of a layer, owned by uid:uid.
type tarDir struct {
	name string
	uid  int
	mode int64
}

// tarGz is a reproducible gzip tar of dirs (in the order given) and files (path → content, mode 0644, in path
// order), and its diff ID.
func tarGz(files map[string]string, dirs ...tarDir) ([]byte, string, error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, d := range dirs {
		hdr := &tar.Header{Name: d.name + "/", Mode: d.mode, Uid: d.uid, Gid: d.uid, ModTime: time.Unix(0, 0), Typeflag: tar.TypeDir}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", fmt.Errorf("writing a layer: %w", err)
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", fmt.Errorf("writing a layer: %w", err)
		}
		if _, err := io.WriteString(tw, files[n]); err != nil {
			return nil, "", fmt.Errorf("writing a layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", fmt.Errorf("writing a layer: %w", err)
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	if _, err := gw.Write(tb.Bytes()); err != nil {
		return nil, "", fmt.Errorf("compressing a layer: %w", err)
	}
	if err := gw.Close(); err != nil {
		return nil, "", fmt.Errorf("compressing a layer: %w", err)
	}
	return gb.Bytes(), digest.FromBytes(tb.Bytes()).String(), nil
}

// image is a tag of the target repository with what its config says.
type image struct {
	Tag, Digest  string
	Level, Build int64
}

func (i image) String() string {
	return fmt.Sprintf("%s (level %d, build %d, %s)", i.Tag, i.Level, i.Build, i.Digest)
}

// tags returns the digest each tag of repo names (none when the repository does not exist), but cosign's
// signature and attestation tags (sha256-<hex>.sig, .att).
func (d *distribution) tags(ctx context.Context, repo string) (map[string]string, error) {
	r, err := d.ref(repo)
	if err != nil {
		return nil, err
	}
	tl, err := d.rc.TagList(ctx, r)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	names, err := tl.GetTags()
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", repo, err)
	}
	out := map[string]string{}
	for _, tag := range names {
		if _, _, ok := registry.TagAccessory(tag); ok {
			continue
		}
		m, err := d.rc.ManifestHead(ctx, r.SetTag(tag))
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
		out[tag] = m.GetDescriptor().Digest.String()
	}
	return out, nil
}

// targetImages reads every tag of acme/am, and the update level and build number labels of the image it
// names, ordered by build number. A repository that does not exist yet has none.
func (d *distribution) targetImages(ctx context.Context) ([]image, error) {
	repo, err := d.ref(targetRepo)
	if err != nil {
		return nil, err
	}
	tl, err := d.rc.TagList(ctx, repo)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", targetRepo, err)
	}
	tags, err := tl.GetTags()
	if err != nil {
		return nil, fmt.Errorf("listing the tags of %s: %w", targetRepo, err)
	}
	var out []image
	for _, tag := range tags {
		if t, err := imagetag.Parse(tag); err != nil || t.Moving() {
			continue // a rolling tag the promoter moves in the chain's first stage (latest, 4.2.0)
		}
		r := repo.SetTag(tag)
		m, err := d.rc.ManifestHead(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", targetRepo, tag, err)
		}
		cfg, err := d.rc.ImageConfig(ctx, r, regclient.ImageWithPlatform("linux/amd64"))
		if err != nil {
			return nil, fmt.Errorf("reading the config of %s:%s: %w", targetRepo, tag, err)
		}
		labels := cfg.GetConfig().Config.Labels
		img := image{Tag: tag, Digest: m.GetDescriptor().Digest.String()}
		if img.Level, err = strconv.ParseInt(labels[levelLabel], 10, 64); err != nil {
			return nil, fmt.Errorf("%s:%s: label %s: %w", targetRepo, tag, levelLabel, err)
		}
		if img.Build, err = strconv.ParseInt(labels[buildLabel], 10, 64); err != nil {
			return nil, fmt.Errorf("%s:%s: label %s: %w", targetRepo, tag, buildLabel, err)
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b image) int { return int(a.Build - b.Build) })
	return out, nil
}

// --- harborflow ---

// writeHarborflowConfig writes a configuration like deploy/harborflow.yaml for a registry at regHost: an
// embedded NATS with its store in dir, a distribution source for that registry, one overlay recipe that
// follows wso2-apim/am:4.2.0 into acme/am with a small context directory, signing with cosign's encrypted key
// (its password from $E2E_COSIGN_PASSWORD), and a chain into acme-staging/am that wants the images signed.
func writeHarborflowConfig(t *testing.T, dir, regHost, httpAddr, natsAddr string) string {
	t.Helper()
	files := map[string]string{
		"home/wso2carbon/wso2am-4.2.0/repository/conf/acme.toml":               "[server]\nhostname = \"am.acme.example\"\n",
		"home/wso2carbon/wso2am-4.2.0/repository/components/lib/acme-jdbc.jar": "not really a jar\n",
	}
	ctxDir := filepath.Join(dir, "context")
	for name, content := range files {
		p := filepath.Join(ctxDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("writing the recipe's context: %v", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatalf("writing the recipe's context: %v", err)
		}
	}
	cfg := fmt.Sprintf(`nats:
  listen: %[1]s
  store_dir: %[2]s
http:
  listen: %[3]s
log:
  level: info
sources:
  - name: %[4]s
    kind: distribution
    host: %[5]s
    secrets: [%[6]q]
registries:
  - host: %[5]s
    plain_http: true
inspector:
  update_level_label: %[7]s
rebuilds:
  - name: %[8]s
    base: %[5]s/%[9]s:4.2.0
    builder: overlay
    context: %[10]s
    owner: "802:802"
    target: %[5]s/%[11]s
    tag: "{{.Version}}.{{.UpdateLevel}}.{{.Build}}{{.Suffix}}"
promotions:
  - name: %[12]s
    stages:
      - repository: %[5]s/%[11]s
      - repository: %[5]s/%[13]s
        gates: {non_root: true, allowed_ports: ["9443/tcp"], signed: true, provenance: {base: ["%[5]s/%[9]s"]}}
    rolling_tags: ["{{.Version}}", "latest"]
signing:
  key: %[14]s
  password: ${%[15]s}
  public_keys: [%[16]s]
`, natsAddr, filepath.Join(dir, "nats"), httpAddr, source, regHost, webhookKey, levelLabel, recipeName, baseRepo,
		ctxDir, targetRepo, chainName, stagingRepo, keyFile(t, "cosign.key"), passwordEnv, keyFile(t, "cosign.pub"))
	path := filepath.Join(dir, "harborflow.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing harborflow's configuration: %v", err)
	}
	return path
}

// keyFile is the absolute path of a file of keyDir.
func keyFile(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(keyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// harborflow runs `harborflow run --config config`, again and again if the test kills it; every run
// appends its logs to logPath.
type harborflow struct {
	bin, config, httpAddr, logPath string

	mu   sync.Mutex
	cur  *exec.Cmd
	done chan struct{} // closed when cur has exited
	runs int
}

// start runs harborflow and waits until /readyz answers 200.
func (h *harborflow) start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil {
		return errors.New("starting harborflow: it is running")
	}
	logFile, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("starting harborflow: %w", err)
	}
	h.runs++
	fmt.Fprintf(logFile, "=== e2e: run %d started at %s\n", h.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(h.bin, "run", "--config", h.config)
	cmd.Env = append(os.Environ(), passwordEnv+"="+cosignPassword)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting harborflow: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	h.cur, h.done = cmd, done

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + h.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			h.cur = nil
			return fmt.Errorf("harborflow run %d exited before it was ready: %s; its log is %s", h.runs, cmd.ProcessState, h.logPath)
		case <-ctx.Done():
			return fmt.Errorf("harborflow run %d not ready: %w (last: %v)", h.runs, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// kill SIGKILLs the running harborflow and waits until it is gone.
func (h *harborflow) kill() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return errors.New("killing harborflow: it is not running")
	}
	if err := h.cur.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing harborflow run %d: %w", h.runs, err)
	}
	<-h.done
	h.appendLog(fmt.Sprintf("=== e2e: run %d killed at %s\n", h.runs, time.Now().Format(time.RFC3339Nano)))
	h.cur = nil
	return nil
}

// stop ends the running harborflow with SIGTERM (SIGKILL after 20 s), if one runs.
func (h *harborflow) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return
	}
	_ = h.cur.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		_ = h.cur.Process.Kill()
		<-h.done
	}
	h.cur = nil
}

func (h *harborflow) appendLog(s string) {
	if f, err := os.OpenFile(h.logPath, os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		_, _ = f.WriteString(s)
		_ = f.Close()
	}
}

// cli runs `harborflow ARGS --config CONFIG` and returns its standard output.
func (h *harborflow) cli(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, h.bin, append(args, "--config", h.config)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("harborflow %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// eventLine is a line of `harborflow events`.
type eventLine struct {
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Subject  string              `json:"subject"`
	Headers  map[string][]string `json:"headers"`
	Data     json.RawMessage     `json:"data"`
}

func (l eventLine) header(name string) string {
	if v := l.Headers[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// decode reads the message body (protojson) into m.
func (l eventLine) decode(m proto.Message) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(l.Data, m); err != nil {
		return fmt.Errorf("decoding %s #%d: %w", l.Subject, l.Sequence, err)
	}
	return nil
}

// events runs `harborflow events --subject SUBJECT` and parses its lines.
func (h *harborflow) events(ctx context.Context, subject string) ([]eventLine, error) {
	out, err := h.cli(ctx, "events", "--subject", subject)
	if err != nil {
		return nil, err
	}
	var lines []eventLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
	for sc.Scan() {
		var l eventLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("harborflow events: line %q: %w", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("harborflow events: %w", err)
	}
	return lines, nil
}

// pipelineStatus is what the tests read of `harborflow status --json`.
type pipelineStatus struct {
	Streams []struct {
		Name      string           `json:"name"`
		LastSeq   uint64           `json:"lastSeq"`
		Consumers []consumerStatus `json:"consumers"`
	} `json:"streams"`
}

type consumerStatus struct {
	Name       string `json:"name"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ackPending"`
	Delivered  uint64 `json:"delivered"`
}

func (c consumerStatus) String() string {
	return fmt.Sprintf("%s: %d pending, %d unacked, delivered up to #%d", c.Name, c.Pending, c.AckPending, c.Delivered)
}

// idleAfter reports whether the consumer has been handed every message up to seq and settled them all.
func (c consumerStatus) idleAfter(seq uint64) bool {
	return c.Delivered >= seq && c.Pending == 0 && c.AckPending == 0
}

// status runs `harborflow status --json`.
func (h *harborflow) status(ctx context.Context) (*pipelineStatus, error) {
	out, err := h.cli(ctx, "status", "--json")
	if err != nil {
		return nil, err
	}
	st := &pipelineStatus{}
	if err := json.Unmarshal(out, st); err != nil {
		return nil, fmt.Errorf("harborflow status --json: %w: %s", err, out)
	}
	return st, nil
}

// consumer is the named stage consumer of stream; the zero value when there is none (yet).
func (st *pipelineStatus) consumer(stream, name string) consumerStatus {
	for _, s := range st.Streams {
		for _, c := range s.Consumers {
			if s.Name == stream && c.Name == name {
				return c
			}
		}
	}
	return consumerStatus{Name: name}
}

// lastSeq is the sequence of the last line, 0 for none.
func lastSeq(lines []eventLine) uint64 {
	if len(lines) == 0 {
		return 0
	}
	return lines[len(lines)-1].Sequence
}

// settled reports whether the inspector has handled every push event stored, the rebuilder every
// image.inspected and the promoter every image.inspected, image.rebuilt and task, with nothing left
// unacknowledged (a delivery cut short by a kill stays unacknowledged until the server redelivers it, AckWait
// later); and describes the state.
func (h *harborflow) settled(ctx context.Context) (bool, string, error) {
	pushes, err := h.events(ctx, "registry.*.push")
	if err != nil {
		return false, "", err
	}
	inspected, err := h.events(ctx, event.SubjectImageInspected)
	if err != nil {
		return false, "", err
	}
	rebuilt, err := h.events(ctx, event.SubjectImageRebuilt)
	if err != nil {
		return false, "", err
	}
	tasks, err := h.events(ctx, event.TaskSubject(event.StagePromoter))
	if err != nil {
		return false, "", err
	}
	st, err := h.status(ctx)
	if err != nil {
		return false, "", err
	}
	ins := st.consumer(event.StreamRegistry, event.StageInspector)
	reb := st.consumer(event.StreamImage, event.StageRebuilder)
	pro := st.consumer(event.StreamImage, event.StagePromoter)
	proTasks := st.consumer(event.StreamTask, event.StagePromoter)
	ok := ins.idleAfter(lastSeq(pushes)) && reb.idleAfter(lastSeq(inspected)) &&
		pro.idleAfter(max(lastSeq(inspected), lastSeq(rebuilt))) && proTasks.idleAfter(lastSeq(tasks))
	return ok, fmt.Sprintf("%d push events (last #%d), %s; %d image.inspected (last #%d), %s; promoter %s, tasks %s",
		len(pushes), lastSeq(pushes), ins, len(inspected), lastSeq(inspected), reb, pro, proTasks), nil
}

// --- logs ---

// dumpLogs prints what a person diagnosing a failure reads first: harborflow's warnings and errors, the
// registry's errors (but the 404s of existence checks, which are routine), and where the whole logs are.
func (e *env) dumpLogs() {
	where := func(path string) string {
		if os.Getenv("E2E_ARTIFACTS") == "" {
			return path + ", removed with the test: set E2E_ARTIFACTS=DIR to keep it"
		}
		return path
	}
	e.t.Logf("harborflow warnings and errors (whole log: %s):\n%s", where(e.hf.logPath), grepLines(e.hf.logPath, func(l string) bool {
		return strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.HasPrefix(l, "=== e2e:") ||
			strings.Contains(l, "panic")
	}))
	e.t.Logf("registry errors (whole log: %s):\n%s", where(e.reg.logPath), grepLines(e.reg.logPath, func(l string) bool {
		routine := strings.Contains(l, "http.response.status=404") &&
			(strings.Contains(l, "http.request.method=HEAD") || strings.Contains(l, `err.code="name unknown"`))
		return !routine && (strings.Contains(l, "level=error") || strings.Contains(l, "level=warn") || strings.Contains(l, "panic"))
	}))
}

// grepLines are the lines of file that keep, at most the last 200.
func grepLines(file string, keep func(string) bool) string {
	var out []string
	for _, line := range strings.Split(readFile(file), "\n") {
		if keep(line) {
			out = append(out, line)
		}
	}
	if len(out) > 200 {
		out = append([]string{fmt.Sprintf("(%d lines before these)", len(out)-200)}, out[len(out)-200:]...)
	}
	return strings.Join(out, "\n")
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	return string(b)
}
