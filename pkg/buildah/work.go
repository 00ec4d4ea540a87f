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

// work is the directory of one build:
//
//	build.log                 buildah's output
//	conf/                     policy.json, registries.conf (+ .d), containers.conf, storage.conf, auth.json
//	home/                     HOME, with .config/containers/certs.d/<host>/ca.crt
//	run/ storage/ tmp/ xdg/   buildah's run root, storage, TMPDIR and XDG_RUNTIME_DIR
//	layout/                   the OCI image layout of the result
type work struct {
	dir                           string
	conf, storage, run, tmp, home string
	xdg, layout, logFile          string
	policy, registries, registryD string
	containersConf, storageConf   string
	authFile, shortNames          string
	env                           []string
}

// passEnv are the variables of our own environment that buildah gets: the proxies it must use to reach
// registries and the CA locations Go's TLS reads.
var passEnv = []string{
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
}

// prepare makes a fresh work directory with the configuration files buildah reads.
func (b *Builder) prepare() (_ *work, err error) {
	dir, err := os.MkdirTemp(b.workDir, "harborflow-buildah-*")
	if err != nil {
		return nil, fmt.Errorf("making the build work dir under %s: %w", b.workDir, err)
	}
	w := &work{
		dir:     dir,
		conf:    filepath.Join(dir, "conf"),
		storage: filepath.Join(dir, "storage"),
		run:     filepath.Join(dir, "run"),
		tmp:     filepath.Join(dir, "tmp"),
		home:    filepath.Join(dir, "home"),
		xdg:     filepath.Join(dir, "xdg"),
		layout:  filepath.Join(dir, "layout"),
		logFile: filepath.Join(dir, "build.log"),
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	w.policy = filepath.Join(w.conf, "policy.json")
	w.registries = filepath.Join(w.conf, "registries.conf")
	w.registryD = filepath.Join(w.conf, "registries.conf.d")
	w.containersConf = filepath.Join(w.conf, "containers.conf")
	w.storageConf = filepath.Join(w.conf, "storage.conf")
	w.authFile = filepath.Join(w.conf, "auth.json")
	w.shortNames = filepath.Join(w.conf, "short-name-aliases.conf")
	for _, d := range []string{w.conf, w.registryD, w.storage, w.run, w.tmp, w.home, w.xdg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("making build work dir %s: %w", d, err)
		}
	}

	auths := map[string]map[string]string{}
	var regConf strings.Builder
	// One search registry, as Docker has: short names in FROM lines mean docker.io, without ambiguity.
	regConf.WriteString("unqualified-search-registries = [\"docker.io\"]\n")
	for _, r := range b.regs {
		if r.PlainHTTP || r.Insecure {
			// buildah's --tls-verify applies to every registry of an invocation; registries.conf is per host.
			fmt.Fprintf(&regConf, "\n[[registry]]\nlocation = %q\ninsecure = true\n", r.Host)
		}
		if r.Username != "" || r.Password.Value() != "" {
			cred := base64.StdEncoding.EncodeToString([]byte(r.Username + ":" + r.Password.Value()))
			auths[authKey(r.Host)] = map[string]string{"auth": cred}
		}
		if r.CAFile != "" {
			ca, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("registry %s: reading ca_file: %w", r.Host, err)
			}
			certs := filepath.Join(w.home, ".config", "containers", "certs.d", r.Host)
			if err := os.MkdirAll(certs, 0o700); err != nil {
				return nil, fmt.Errorf("registry %s: making the CA dir: %w", r.Host, err)
			}
			if err := os.WriteFile(filepath.Join(certs, "ca.crt"), ca, 0o600); err != nil {
				return nil, fmt.Errorf("registry %s: writing the CA: %w", r.Host, err)
			}
		}
	}
	authJSON, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, fmt.Errorf("encoding the registry auth file: %w", err)
	}
	files := []struct {
		path    string
		content string
	}{
		{w.policy, `{"default":[{"type":"insecureAcceptAnything"}]}` + "\n"},
		{w.registries, regConf.String()},
		{w.authFile, string(authJSON)},
		{w.containersConf, fmt.Sprintf("[engine]\nimage_copy_tmp_dir = %q\n\n[network]\nnetwork_config_dir = %q\n",
			w.tmp, filepath.Join(w.dir, "networks"))},
		{w.storageConf, fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", w.run, w.storage)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, fmt.Errorf("writing build config %s: %w", f.path, err)
		}
	}

	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	w.env = []string{
		"PATH=" + path,
		"HOME=" + w.home,
		"XDG_RUNTIME_DIR=" + w.xdg,
		"XDG_CONFIG_HOME=" + filepath.Join(w.home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(w.home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(w.home, ".cache"),
		"TMPDIR=" + w.tmp,
		"BUILDAH_ISOLATION=chroot",
		"BUILDAH_FORMAT=oci",
		"STORAGE_DRIVER=vfs",
		"CONTAINERS_CONF=" + w.containersConf,
		"CONTAINERS_STORAGE_CONF=" + w.storageConf,
		"CONTAINERS_REGISTRIES_CONF=" + w.registries,
		"REGISTRY_AUTH_FILE=" + w.authFile,
	}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			w.env = append(w.env, k+"="+v)
		}
	}
	return w, nil
}

// globalArgs are the arguments every buildah invocation of the build starts with.
func (w *work) globalArgs() []string {
	return []string{
		"--root", w.storage, "--runroot", w.run, "--storage-driver", "vfs",
		"--registries-conf", w.registries, "--registries-conf-dir", w.registryD,
		"--short-name-alias-conf", w.shortNames,
	}
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
	for _, d := range []string{w.storage, w.run, w.tmp} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing build storage %s: %w", d, err)
		}
	}
	return nil
}

// remove removes the whole work directory.
func (w *work) remove() error {
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("removing build work dir %s: %w", w.dir, err)
	}
	return nil
}
