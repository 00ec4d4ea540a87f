package buildah

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Storage drivers an Env can use.
const (
	// DriverVFS stores every layer as a full copy: no kernel overlay support or fuse is needed. Builds use it.
	DriverVFS = "vfs"
	// DriverOverlay is the kernel's overlayfs, as podman, CRI-O and containerd's overlayfs snapshotter store
	// images: it needs root (or a user namespace) and a kernel and file system that allow overlay mounts.
	DriverOverlay = "overlay"
)

// Env is an isolated buildah environment, all in one directory:
//
//	conf/                     policy.json, registries.conf (+ .d), containers.conf, storage.conf, auth.json
//	home/                     HOME, with .config/containers/certs.d/<host>/ca.crt
//	run/ storage/ tmp/ xdg/   buildah's run root, storage, TMPDIR and XDG_RUNTIME_DIR
//
// Nothing is read from /etc/containers or from the caller's home directory. Every Build runs in an Env of its
// own; tests run buildah commands of their own in one (see package buildahtest). Run buildah with Args as
// its arguments and Environ as its environment.
type Env struct {
	// Dir holds the whole environment.
	Dir string
	// Driver is the storage driver: DriverVFS or DriverOverlay.
	Driver string
	// Policy is the signature policy (it accepts anything), for the --signature-policy option.
	Policy string
	// AuthFile holds the registries' credentials, for the --authfile option.
	AuthFile string
	// Storage, RunRoot and TmpDir are buildah's storage (graph root), run root and temporary directory.
	Storage, RunRoot, TmpDir string

	registries, registryD, shortNames string
	environ                           []string
}

// passEnv are the variables of our own environment that buildah gets: the proxies it must use to reach
// registries and the CA locations Go's TLS reads.
var passEnv = []string{
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
}

// NewEnv makes an environment in dir, which is created if missing and should be empty, for the storage
// driver (DriverVFS or DriverOverlay) and the registries regs: docker.io is the one search registry, plain_http
// and insecure hosts are marked insecure in registries.conf, credentials go into the auth file (mode 0600)
// and a host's ca_file becomes its certs.d CA. Other hosts are reached anonymously over verified TLS.
// RUN steps default to chroot isolation and built images to the OCI format.
func NewEnv(dir, driver string, regs []Host) (*Env, error) {
	if driver != DriverVFS && driver != DriverOverlay {
		return nil, fmt.Errorf("storage driver %q: want %q or %q", driver, DriverVFS, DriverOverlay)
	}
	if err := checkRegistries(regs); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving buildah environment dir %s: %w", dir, err)
	}
	conf, home, xdg := filepath.Join(dir, "conf"), filepath.Join(dir, "home"), filepath.Join(dir, "xdg")
	e := &Env{
		Dir:        dir,
		Driver:     driver,
		Policy:     filepath.Join(conf, "policy.json"),
		AuthFile:   filepath.Join(conf, "auth.json"),
		Storage:    filepath.Join(dir, "storage"),
		RunRoot:    filepath.Join(dir, "run"),
		TmpDir:     filepath.Join(dir, "tmp"),
		registries: filepath.Join(conf, "registries.conf"),
		registryD:  filepath.Join(conf, "registries.conf.d"),
		shortNames: filepath.Join(conf, "short-name-aliases.conf"),
	}
	for _, d := range []string{conf, e.registryD, e.Storage, e.RunRoot, e.TmpDir, home, xdg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("making buildah environment dir %s: %w", d, err)
		}
	}

	auths := map[string]map[string]string{}
	var regConf strings.Builder
	// One search registry, as Docker has: short names in FROM lines mean docker.io, without ambiguity.
	regConf.WriteString("unqualified-search-registries = [\"docker.io\"]\n")
	for _, r := range regs {
		if r.PlainHTTP || r.Insecure {
			// buildah's --tls-verify applies to every registry of an invocation; registries.conf is per host.
			fmt.Fprintf(&regConf, "\n[[registry]]\nlocation = %q\ninsecure = true\n", r.Name)
		}
		if r.Username != "" || r.Password.Value() != "" {
			cred := base64.StdEncoding.EncodeToString([]byte(r.Username + ":" + r.Password.Value()))
			auths[authKey(r.Name)] = map[string]string{"auth": cred}
		}
		if r.CAFile != "" {
			ca, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("registry %s: reading ca_file: %w", r.Name, err)
			}
			certs := filepath.Join(home, ".config", "containers", "certs.d", r.Name)
			if err := os.MkdirAll(certs, 0o700); err != nil {
				return nil, fmt.Errorf("registry %s: making the CA dir: %w", r.Name, err)
			}
			if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca, 0o600); err != nil {
				return nil, fmt.Errorf("registry %s: writing the CA: %w", r.Name, err)
			}
		}
	}
	authJSON, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, fmt.Errorf("encoding the registry auth file: %w", err)
	}
	containersConf := filepath.Join(conf, "containers.conf")
	storageConf := filepath.Join(conf, "storage.conf")
	files := []struct {
		path    string
		content string
	}{
		{e.Policy, `{"default":[{"type":"insecureAcceptAnything"}]}` + "\n"},
		{e.registries, regConf.String()},
		{e.AuthFile, string(authJSON)},
		{containersConf, fmt.Sprintf("[engine]\nimage_copy_tmp_dir = %q\n\n[network]\nnetwork_config_dir = %q\n",
			e.TmpDir, filepath.Join(dir, "networks"))},
		{storageConf, fmt.Sprintf("[storage]\ndriver = %q\nrunroot = %q\ngraphroot = %q\n", driver, e.RunRoot, e.Storage)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, fmt.Errorf("writing buildah config %s: %w", f.path, err)
		}
	}

	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	e.environ = []string{
		"PATH=" + path,
		"HOME=" + home,
		"XDG_RUNTIME_DIR=" + xdg,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"TMPDIR=" + e.TmpDir,
		"BUILDAH_ISOLATION=chroot",
		"BUILDAH_FORMAT=oci",
		"STORAGE_DRIVER=" + driver,
		"CONTAINERS_CONF=" + containersConf,
		"CONTAINERS_STORAGE_CONF=" + storageConf,
		"CONTAINERS_REGISTRIES_CONF=" + e.registries,
		"REGISTRY_AUTH_FILE=" + e.AuthFile,
	}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			e.environ = append(e.environ, k+"="+v)
		}
	}
	return e, nil
}

// Args returns the global arguments every buildah invocation in the environment starts with (storage, run
// root, driver and registries configuration), followed by args.
func (e *Env) Args(args ...string) []string {
	return append(e.globalArgs(), args...)
}

// globalArgs are the arguments every buildah invocation in the environment starts with.
func (e *Env) globalArgs() []string {
	return []string{
		"--root", e.Storage, "--runroot", e.RunRoot, "--storage-driver", e.Driver,
		"--registries-conf", e.registries, "--registries-conf-dir", e.registryD,
		"--short-name-alias-conf", e.shortNames,
	}
}

// Environ returns the process environment of a buildah invocation in the environment.
func (e *Env) Environ() []string {
	return append([]string(nil), e.environ...)
}

// checkRegistries fails on a registry entry buildah's configuration cannot hold: a host that is not
// host[:port], a host listed twice, or a ca_file that cannot be read.
func checkRegistries(regs []Host) error {
	seen := map[string]bool{}
	for _, r := range regs {
		switch {
		case !hostPattern.MatchString(r.Name):
			return fmt.Errorf("registry host %q: want host or host:port", r.Name)
		case seen[r.Name]:
			return fmt.Errorf("registry %s: listed twice", r.Name)
		}
		seen[r.Name] = true
		if r.CAFile != "" {
			if _, err := os.ReadFile(r.CAFile); err != nil {
				return fmt.Errorf("registry %s: reading ca_file: %w", r.Name, err)
			}
		}
	}
	return nil
}

// work is the directory of one build: an Env (vfs storage), plus
//
//	build.log                 buildah's output
//	layout/                   the OCI image layout of the result
type work struct {
	*Env
	layout, logFile string
}

// prepare makes a fresh work directory with the configuration files buildah reads.
func (b *Builder) prepare() (_ *work, err error) {
	dir, err := os.MkdirTemp(b.workDir, "harborflow-buildah-*")
	if err != nil {
		return nil, fmt.Errorf("making the build work dir under %s: %w", b.workDir, err)
	}
	env, err := NewEnv(dir, DriverVFS, b.regs)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &work{Env: env, layout: filepath.Join(dir, "layout"), logFile: filepath.Join(dir, "build.log")}, nil
}

// authKey is the key of host in a containers auth file.
func authKey(host string) string {
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return host
}

// tail returns the last n lines of the build log.
func (w *work) tail(n int) []string {
	const maxRead = 256 << 10
	f, err := os.Open(w.logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		if _, err := f.Seek(fi.Size()-maxRead, io.SeekStart); err != nil {
			return nil
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRead))
	if err != nil {
		return nil
	}
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// dropStorage removes buildah's storage and run root once the result is in the layout.
func (w *work) dropStorage() error {
	for _, d := range []string{w.Storage, w.RunRoot, w.TmpDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing build storage %s: %w", d, err)
		}
	}
	return nil
}

// remove removes the whole work directory.
func (w *work) remove() error {
	if err := os.RemoveAll(w.Dir); err != nil {
		return fmt.Errorf("removing build work dir %s: %w", w.Dir, err)
	}
	return nil
}
