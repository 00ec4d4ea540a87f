// Package buildah runs a Dockerfile build with the buildah command and leaves the built image as an OCI
// image layout directory, for another component to copy to a registry. It never pushes to a registry.
//
// Isolation. Every Build gets a fresh work directory of its own (under WithWorkDir) holding buildah's storage
// (vfs driver, so no kernel overlay support or fuse is needed), its run root, a temporary directory, a home
// directory, and the configuration files buildah reads: a signature policy that accepts anything, a
// registries.conf (docker.io as the one search registry, insecure = true for plain_http and insecure hosts), a
// containers.conf, a storage.conf and an auth file. Nothing is read from /etc/containers or from the
// caller's home directory, and RUN steps use chroot isolation, which works as root without a container
// runtime. Cleanup removes the work directory; a failed Build removes it itself. The environment is an Env,
// which NewEnv makes for either storage driver, so that tests can run buildah commands of their own in one.
//
// One file is written outside the work directory: buildah (1.28) running as root records, in
// /var/lib/containers/cache/blob-info-cache-v1.boltdb, which compressed blob digests map to which uncompressed
// ones and in which registry repositories they were seen (no content, no credentials). containers/image puts
// it there for every root process whose caller did not set a directory, and no buildah option, environment
// variable or configuration file sets one for a pull (bud's FROM) or a push; only a mount namespace of its
// own around buildah would move it.
//
// Registries. Credentials of the configured registries go into an auth file (mode 0600) in the work directory,
// never onto a command line (process arguments are visible to every user) nor into logs or errors. A host's
// ca_file becomes <home>/.config/containers/certs.d/<host>/ca.crt, where buildah looks for per-host CAs, on
// top of the system's; buildah's --cert-dir would apply one flat directory to every host instead. Build
// arguments are passed on the command line and stored in the image's history: never put secrets in them.
//
// Results. A single-platform build leaves an image manifest in the layout, a build for several platforms an
// OCI index of one image per platform; either is the layout's only entry, named "latest", so
// "ocidir://"+Result.Layout resolves to it with regclient.
//
// Stopping. When a build's context ends (a shutdown, Spec.Timeout), buildah's process group — buildah, its
// chroot runtime, the RUN step and whatever that forked — gets SIGTERM, buildah a second to stop, and then
// the group SIGKILL; Build returns once no process of the group is left (not even a zombie: the process
// becomes a child subreaper on the first build, so that it inherits and reaps the group's orphans) and the
// work directory is removed, within about a second and a half.
//
// Failures are *BuildError values carrying the tail of buildah's output. A build that could not pull a base
// image matches ErrPullBase, a build that ran out of time matches context.DeadlineExceeded. A missing build
// context or Dockerfile is reported before buildah runs and matches fs.ErrNotExist.
package buildah

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/logging"
)

// Defaults.
const (
	// DefaultLogTail is how many lines of buildah's output a *BuildError keeps.
	DefaultLogTail = 40
	// LayoutTag is the name (org.opencontainers.image.ref.name) of the built image in the layout.
	LayoutTag = "latest"
)

// buildImage is the name of the built image (or manifest list) in the build's own storage.
const buildImage = "localhost/harborflow-build:latest"

// Builder runs buildah. It holds no state between builds, so one Builder serves concurrent Builds.
type Builder struct {
	path    string
	workDir string
	tail    int
	log     *zap.Logger
	regs    []Host
}

// Opt configures a Builder.
type Opt func(*Builder)

// WithPath sets the buildah executable (default: "buildah" looked up on PATH).
func WithPath(path string) Opt {
	return func(b *Builder) {
		if path != "" {
			b.path = path
		}
	}
}

// WithLogger sets the logger (default: none).
func WithLogger(log *zap.Logger) Opt {
	return func(b *Builder) {
		if log != nil {
			b.log = log
		}
	}
}

// WithWorkDir sets the directory under which each Build makes its work directory (default os.TempDir()). It
// needs room for the base image several times over: the vfs driver stores every layer as a full copy.
func WithWorkDir(dir string) Opt {
	return func(b *Builder) {
		if dir != "" {
			b.workDir = dir
		}
	}
}

// WithLogTail sets how many of the last lines of buildah's output a *BuildError keeps (default
// DefaultLogTail).
func WithLogTail(n int) Opt {
	return func(b *Builder) {
		if n > 0 {
			b.tail = n
		}
	}
}

// hostPattern is what a registry host may look like: a name or an address, with an optional port.
var hostPattern = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]+)?$`)

// New returns a Builder that reaches the registry hosts regs with their credentials, CAs and
// TLS settings; other hosts are reached anonymously over verified TLS. It fails when buildah cannot be found
// or a registry entry cannot be used.
func New(regs []Host, opts ...Opt) (*Builder, error) {
	b := &Builder{workDir: os.TempDir(), tail: DefaultLogTail, log: zap.NewNop()}
	for _, o := range opts {
		o(b)
	}
	if b.path == "" {
		p, err := exec.LookPath("buildah")
		if err != nil {
			return nil, fmt.Errorf("buildah not found on PATH: install the buildah package: %w", err)
		}
		b.path = p
	} else {
		p, err := exec.LookPath(b.path)
		if err != nil {
			return nil, fmt.Errorf("buildah not found at %s: %w", b.path, err)
		}
		b.path = p
	}
	wd, err := filepath.Abs(b.workDir)
	if err != nil {
		return nil, fmt.Errorf("resolving work dir %s: %w", b.workDir, err)
	}
	if strings.Contains(wd, ":") {
		// buildah's oci: transport splits its argument at the first colon.
		return nil, fmt.Errorf("work dir %s: contains ':', which buildah's oci: transport cannot handle", wd)
	}
	b.workDir = wd
	if err := checkRegistries(regs); err != nil {
		return nil, err
	}
	b.regs = append(b.regs, regs...)
	return b, nil
}

// Spec is what to build.
type Spec struct {
	// Context is the build context directory.
	Context string
	// Dockerfile is the Dockerfile's path relative to Context (default "Dockerfile").
	Dockerfile string
	// BuildArgs are the build arguments, e.g. BASE_IMAGE=registry/repo@sha256:... They are visible in the
	// process list and the image history: no secrets.
	BuildArgs map[string]string
	// Platforms are os/arch[/variant]. Empty builds for the host's platform; several build one image per
	// platform, and the result is an index. RUN steps for a foreign platform need qemu-user-static.
	Platforms []string
	// Timeout bounds the whole build (0: no limit beyond the context's).
	Timeout time.Duration
}

// Result is a finished build.
type Result struct {
	// Layout is the OCI image layout directory holding exactly the built image, named LayoutTag: an image
	// manifest for one platform, an index for several. It lives until Cleanup.
	Layout string
	// Digest is the digest of the layout's image manifest or index.
	Digest string
	// MediaType is its media type.
	MediaType string
	// Platforms are the built image's platforms, os/arch[/variant].
	Platforms []string
	// Log is the file holding buildah's whole output. It lives until Cleanup.
	Log string
	// Duration is how long the build took, pushing to the layout included.
	Duration time.Duration

	workDir string
}

// Cleanup removes the layout, the log and the rest of the build's work directory. It may be called more
// than once.
func (r *Result) Cleanup() error {
	if r == nil || r.workDir == "" {
		return nil
	}
	if err := os.RemoveAll(r.workDir); err != nil {
		return fmt.Errorf("removing build work dir %s: %w", r.workDir, err)
	}
	return nil
}

// platformPattern is os/arch[/variant].
var platformPattern = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)

// check validates the spec and returns the absolute context directory and Dockerfile.
func (s Spec) check() (dir, dockerfile string, err error) {
	if s.Context == "" {
		return "", "", errors.New("build context: not set")
	}
	dir, err = filepath.Abs(s.Context)
	if err != nil {
		return "", "", fmt.Errorf("build context %s: %w", s.Context, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", "", fmt.Errorf("build context directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return "", "", fmt.Errorf("build context %s: not a directory", dir)
	}
	name := s.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	if !filepath.IsLocal(name) {
		return "", "", fmt.Errorf("checking Dockerfile %s: must be a path inside the build context %s", name, dir)
	}
	dockerfile = filepath.Join(dir, name)
	fi, err = os.Stat(dockerfile)
	if err != nil {
		return "", "", fmt.Errorf("checking Dockerfile %s: %w", dockerfile, err)
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("checking Dockerfile %s: not a regular file", dockerfile)
	}
	for k := range s.BuildArgs {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return "", "", fmt.Errorf("build arg %q: not a valid name", k)
		}
	}
	seen := map[string]bool{}
	for _, p := range s.Platforms {
		if !platformPattern.MatchString(p) {
			return "", "", fmt.Errorf("platform %q: want os/arch[/variant]", p)
		}
		if seen[p] {
			return "", "", fmt.Errorf("platform %s: listed twice", p)
		}
		seen[p] = true
	}
	if s.Timeout < 0 {
		return "", "", fmt.Errorf("build timeout %s: negative", s.Timeout)
	}
	return dir, dockerfile, nil
}

// errTimedOut is the cause of a build context that reached Spec.Timeout.
var errTimedOut = errors.New("build timed out")

// Build runs buildah bud for spec in a work directory of its own and writes the result to an OCI image
// layout. On success the caller owns the Result and removes it with Cleanup; on failure nothing is left
// behind and the error is a *BuildError unless the spec was wrong or the work directory could not be made.
// Build stops buildah and every process it started when ctx ends or spec.Timeout passes (see "Stopping" in the
// package documentation).
func (b *Builder) Build(ctx context.Context, spec Spec) (*Result, error) {
	dir, dockerfile, err := spec.check()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, errTimedOut)
		defer cancel()
	}
	w, err := b.prepare()
	if err != nil {
		return nil, err
	}
	log := b.log.With(zap.String(logging.FieldPath, dir))
	log.Info("buildah build starting")

	res, err := b.build(ctx, w, spec, dir, dockerfile)
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			be.Tail = w.tail(b.tail)
			if ctx.Err() != nil {
				be.Err = ctx.Err()
				be.timeout = spec.Timeout
				be.timedOut = context.Cause(ctx) == errTimedOut
			} else {
				be.classify()
			}
			log.Warn("buildah build failed", zap.Error(err), zap.Duration(logging.FieldDuration, time.Since(start)),
				zap.String(logging.FieldReason, strings.Join(be.Tail, "\n")))
		} else {
			log.Warn("buildah build failed", zap.Error(err), zap.Duration(logging.FieldDuration, time.Since(start)))
		}
		if rmErr := w.remove(); rmErr != nil {
			log.Warn("removing the build work dir failed", zap.Error(rmErr))
		}
		return nil, err
	}
	res.Duration = time.Since(start)
	log.Info("buildah build finished", zap.String(logging.FieldDigest, res.Digest),
		zap.Duration(logging.FieldDuration, res.Duration))
	return res, nil
}

// build runs the buildah commands of a build in w.
func (b *Builder) build(ctx context.Context, w *work, spec Spec, dir, dockerfile string) (*Result, error) {
	bud := []string{"bud", "--isolation", "chroot", "--format", "oci",
		"--signature-policy", w.Policy, "--authfile", w.AuthFile, "--file", dockerfile}
	keys := make([]string, 0, len(spec.BuildArgs))
	for k := range spec.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		bud = append(bud, "--build-arg", k+"="+spec.BuildArgs[k])
	}
	list := len(spec.Platforms) > 1
	switch {
	case list:
		// One bud per platform, each adding its image to the list: a single bud with --platform a,b builds
		// the platforms concurrently and lists them in the order they finish.
		for _, p := range spec.Platforms {
			args := append(slices.Clip(bud), "--platform", p, "--manifest", buildImage, dir)
			if err := b.run(ctx, w, dir, args); err != nil {
				var be *BuildError
				if errors.As(err, &be) {
					be.Platform = p
				}
				return nil, err
			}
		}
	case len(spec.Platforms) == 1:
		if err := b.run(ctx, w, dir, append(bud, "--platform", spec.Platforms[0], "--tag", buildImage, dir)); err != nil {
			return nil, err
		}
	default:
		if err := b.run(ctx, w, dir, append(bud, "--tag", buildImage, dir)); err != nil {
			return nil, err
		}
	}

	dest := "oci:" + w.layout + ":" + LayoutTag
	push := []string{"push", "--format", "oci", "--signature-policy", w.Policy, buildImage, dest}
	if list {
		push = []string{"manifest", "push", "--all", "--format", "oci", "--signature-policy", w.Policy, buildImage, dest}
	}
	if err := b.run(ctx, w, w.Dir, push); err != nil {
		return nil, err
	}
	desc, platforms, err := readLayout(w.layout)
	if err != nil {
		return nil, err
	}
	// The layout holds everything from here on; vfs storage is the bulk of the work dir.
	if err := w.dropStorage(); err != nil {
		return nil, err
	}
	return &Result{
		Layout:    w.layout,
		Digest:    desc.Digest,
		MediaType: desc.MediaType,
		Platforms: platforms,
		Log:       w.logFile,
		workDir:   w.Dir,
	}, nil
}
