package buildahtest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

const (
	annotBaseName   = "org.opencontainers.image.base.name"
	annotBaseDigest = "org.opencontainers.image.base.digest"
)

// manifest is the part of a manifest, index or manifest list the tests look at.
type manifest struct {
	MediaType string `json:"mediaType"`
	Layers    []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
	Manifests []struct {
		Digest   string `json:"digest"`
		Platform struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
		} `json:"platform"`
	} `json:"manifests"`
	Annotations map[string]string `json:"annotations"`
}

func readManifest(t *testing.T, reg *registrytest.Registry, repoRef string) manifest {
	t.Helper()
	_, body := reg.ReadManifest(t, repoRef)
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decoding manifest %s: %v", repoRef, err)
	}
	return m
}

// platformManifests maps the platforms of the index repo@dig to their manifests' digests.
func platformManifests(t *testing.T, reg *registrytest.Registry, repo, dig string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range readManifest(t, reg, repo+"@"+dig).Manifests {
		out[d.Platform.OS+"/"+d.Platform.Architecture] = d.Digest
	}
	return out
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// writeFiles writes files (slash path → content, or "-> target" for a symbolic link) under a new directory,
// each with mode.
func writeFiles(t *testing.T, files map[string]string, mode fs.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			err = os.Symlink(target, p)
		} else if err = os.WriteFile(p, []byte(content), mode); err == nil {
			err = os.Chmod(p, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var twoPlatforms = []string{"linux/amd64", "linux/arm64"}

// The base reads the same with both drivers, on every platform, and is the WSO2 shape BuildBase describes; a
// new update level changes the product layer only.
func TestBuildBase(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	over := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
	vfs := buildahtest.NewStore(t, buildah.DriverVFS, reg.Host)
	dig16 := over.BuildBase(t, reg.Host, "wso2/am:4.2.0.16", buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 16})
	if m := readManifest(t, reg, "wso2/am@"+dig16); m.MediaType != registrytest.MediaOCIIndex || len(m.Manifests) != 2 {
		t.Fatalf("base is a %s of %d manifests, want an OCI index of 2", m.MediaType, len(m.Manifests))
	}

	for _, p := range twoPlatforms {
		got := over.Tree(t, reg.Ref("wso2/am@"+dig16), p)
		if d := buildahtest.Diff(vfs.Tree(t, reg.Ref("wso2/am@"+dig16), p), got); d != nil {
			t.Errorf("%s: the base reads differently on overlay storage than on vfs:\n\t%s", p, strings.Join(d, "\n\t"))
		}
		want := map[string]buildahtest.Entry{
			"lib":                      {Type: buildahtest.TypeSymlink, Mode: fs.ModePerm, Link: "usr/lib"},
			"bin":                      {Type: buildahtest.TypeSymlink, Mode: fs.ModePerm, Link: "usr/bin"},
			"usr/lib":                  {Type: buildahtest.TypeDir, Mode: 0o755},
			"tmp":                      {Type: buildahtest.TypeDir, Mode: 0o777 | fs.ModeSticky},
			"home":                     {Type: buildahtest.TypeDir, Mode: 0o755},
			"home/wso2carbon":          {Type: buildahtest.TypeDir, Mode: 0o750, UID: 802, GID: 802},
			"home/wso2carbon/security": {Type: buildahtest.TypeDir, Mode: 0o700, UID: 802, GID: 802},
			"home/wso2carbon/wso2am-4.2.0/repository/conf/deployment.toml": {Type: buildahtest.TypeFile, Mode: 0o640,
				UID: 802, GID: 802, SHA256: sha("[server]\nhostname = \"localhost\"\n")},
			"home/wso2carbon/wso2am-4.2.0/updates/platform": {Type: buildahtest.TypeFile, Mode: 0o644, UID: 802, GID: 802,
				SHA256: sha(p + "\n")},
			"home/wso2carbon/wso2am-4.2.0/updates/level": {Type: buildahtest.TypeFile, Mode: 0o644, UID: 802, GID: 802,
				SHA256: sha("16\n")},
			"usr/bin/su":       {Type: buildahtest.TypeFile, Mode: 0o755 | fs.ModeSetuid, SHA256: sha("#!test su for " + p + "\n")},
			"etc/shadow":       {Type: buildahtest.TypeFile, Mode: 0o640, GID: 42, SHA256: got["etc/shadow"].SHA256},
			"usr/lib/jdbc.jar": {}, // none
			"opt":              {}, // none
		}
		for _, path := range slices.Sorted(maps.Keys(want)) {
			if g := got[path]; g != want[path] {
				t.Errorf("%s: %s is %+v, want %+v", p, path, g, want[path])
			}
		}
	}

	// Update level 17: the same OS layer on each platform, a new product layer.
	dig17 := over.BuildBase(t, reg.Host, "wso2/am:4.2.0.17", buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 17})
	m16, m17 := platformManifests(t, reg, "wso2/am", dig16), platformManifests(t, reg, "wso2/am", dig17)
	for _, p := range twoPlatforms {
		l16, l17 := readManifest(t, reg, "wso2/am@"+m16[p]).Layers, readManifest(t, reg, "wso2/am@"+m17[p]).Layers
		if len(l16) != 2 || len(l17) != 2 || l16[0] != l17[0] || l16[1] == l17[1] {
			t.Errorf("%s: layers %v at level 16 and %v at level 17; want two each, the first the same", p, l16, l17)
		}
	}
	if m16["linux/amd64"] == m16["linux/arm64"] {
		t.Errorf("both platforms have manifest %s", m16["linux/amd64"])
	}
}

// One platform gives an image manifest, and the docker format Docker schema 2.
func TestBuildBaseFormats(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	store := buildahtest.NewStore(t, buildah.DriverVFS, reg.Host)
	for _, tc := range []struct {
		format    string
		platforms []string
		want      string
	}{
		{"oci", []string{"linux/arm64"}, registrytest.MediaOCIManifest},
		{"docker", []string{"linux/arm64"}, registrytest.MediaDockerManifest},
		{"docker", twoPlatforms, registrytest.MediaDockerList},
	} {
		dig := store.BuildBase(t, reg.Host, "wso2/am:"+tc.format, buildahtest.BaseSpec{Format: tc.format, Platforms: tc.platforms})
		if mt, _ := reg.ReadManifest(t, "wso2/am@"+dig); mt != tc.want {
			t.Errorf("%s base for %v: %s, want %s", tc.format, tc.platforms, mt, tc.want)
		}
	}

	// An image manifest is pulled whatever platform is asked for; Tree must not read it as another's.
	dig := store.BuildBase(t, reg.Host, "wso2/am:arm64", buildahtest.BaseSpec{Platforms: []string{"linux/arm64"}})
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		store.Tree(rec, reg.Ref("wso2/am@"+dig), "linux/amd64")
	}()
	<-done
	if !strings.Contains(rec.fatal, "is an image for linux/arm64") {
		t.Errorf("Tree of an arm64 image for linux/amd64: fatal %q, want it to name linux/arm64", rec.fatal)
	}
}

// fatalRecorder records a Fatalf and ends the goroutine, as testing.T does, without failing the test.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// The reference follows the base's /lib link to /usr/lib, keeps the base's directories, makes missing ones
// with the owner and 0755, and keeps a link a link.
func TestDockerfileTree(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	store := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
	dig := store.BuildBase(t, reg.Host, "wso2/am:4.2.0.16", buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 16})
	base := reg.Ref("wso2/am@" + dig)
	dir := writeFiles(t, map[string]string{
		"lib/jdbc.jar":                        "jar",
		"home/wso2carbon/security/custom.jks": "jks",
		"opt/acme/conf/app.yaml":              "app: acme\n",
		"home/wso2carbon/current":             "-> wso2am-4.2.0",
	}, 0o600)

	got := store.DockerfileTree(t, base, dir, "802:802", "linux/arm64")
	want := store.Tree(t, base, "linux/arm64")
	want["usr/lib/jdbc.jar"] = buildahtest.Entry{Type: buildahtest.TypeFile, Mode: 0o600, UID: 802, GID: 802, SHA256: sha("jar")}
	want["home/wso2carbon/security/custom.jks"] = buildahtest.Entry{Type: buildahtest.TypeFile, Mode: 0o600, UID: 802, GID: 802, SHA256: sha("jks")}
	want["home/wso2carbon/current"] = buildahtest.Entry{Type: buildahtest.TypeSymlink, Mode: fs.ModePerm, UID: 802, GID: 802, Link: "wso2am-4.2.0"}
	for _, d := range []string{"opt", "opt/acme", "opt/acme/conf"} {
		want[d] = buildahtest.Entry{Type: buildahtest.TypeDir, Mode: 0o755, UID: 802, GID: 802}
	}
	want["opt/acme/conf/app.yaml"] = buildahtest.Entry{Type: buildahtest.TypeFile, Mode: 0o600, UID: 802, GID: 802, SHA256: sha("app: acme\n")}
	if d := buildahtest.Diff(want, got); d != nil {
		t.Errorf("reference tree, compared with the base plus the context:\n\t%s", strings.Join(d, "\n\t"))
	}
}

// What buildah 1.28 writes as base image annotations for bud --platform a,b --manifest, which the rebase
// builder reads: nothing on the index; on each platform's OCI manifest, the FROM reference as written and
// the digest of the base's manifest of the same platform (not the index's). Docker schema 2 has no
// annotations at all.
func TestBuildDerivedAnnotations(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	store := buildahtest.NewStore(t, buildah.DriverVFS, reg.Host)
	dig := store.BuildBase(t, reg.Host, "wso2/am:4.2.0.16", buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 16})
	basePlatforms := platformManifests(t, reg, "wso2/am", dig)
	ctxDir := writeFiles(t, map[string]string{"lib/jdbc.jar": "jar"}, 0o644)

	for _, from := range []string{reg.Ref("wso2/am@" + dig), reg.Ref("wso2/am:4.2.0.16")} {
		derived := store.BuildDerived(t, reg.Host, "acme/am:1", buildahtest.DerivedSpec{
			Base: from, Platforms: twoPlatforms, Context: ctxDir, Dockerfile: "COPY lib/jdbc.jar /lib/jdbc.jar\n",
		})
		idx := readManifest(t, reg, "acme/am@"+derived)
		if idx.MediaType != registrytest.MediaOCIIndex || len(idx.Annotations) != 0 {
			t.Errorf("FROM %s: index is a %s with annotations %v; want an OCI index without", from, idx.MediaType, idx.Annotations)
		}
		got := platformManifests(t, reg, "acme/am", derived)
		if len(got) != 2 {
			t.Fatalf("FROM %s: index lists %v, want %v", from, got, twoPlatforms)
		}
		for p, d := range got {
			want := map[string]string{annotBaseName: from, annotBaseDigest: basePlatforms[p]}
			if a := readManifest(t, reg, "acme/am@"+d).Annotations; !maps.Equal(a, want) {
				t.Errorf("FROM %s: %s manifest annotations %v, want %v", from, p, a, want)
			}
		}
	}

	derived := store.BuildDerived(t, reg.Host, "acme/am:docker", buildahtest.DerivedSpec{
		Base: reg.Ref("wso2/am@" + dig), Platforms: twoPlatforms, Context: ctxDir, Format: "docker",
		Dockerfile: "COPY lib/jdbc.jar /lib/jdbc.jar\n",
	})
	list := readManifest(t, reg, "acme/am@"+derived)
	if list.MediaType != registrytest.MediaDockerList || len(list.Annotations) != 0 {
		t.Errorf("docker format: %s with annotations %v; want a manifest list without", list.MediaType, list.Annotations)
	}
	for p, d := range platformManifests(t, reg, "acme/am", derived) {
		if m := readManifest(t, reg, "acme/am@"+d); m.MediaType != registrytest.MediaDockerManifest || len(m.Annotations) != 0 {
			t.Errorf("docker format, %s: %s with annotations %v; want a Docker manifest without", p, m.MediaType, m.Annotations)
		}
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	dir := buildahtest.Entry{Type: buildahtest.TypeDir, Mode: 0o750, UID: 802, GID: 802}
	want := buildahtest.Tree{
		"home/wso2carbon":   dir,
		"lib":               {Type: buildahtest.TypeSymlink, Mode: fs.ModePerm, Link: "usr/lib"},
		"etc/passwd":        {Type: buildahtest.TypeFile, Mode: 0o644, SHA256: sha("root")},
		"tmp":               {Type: buildahtest.TypeDir, Mode: 0o777 | fs.ModeSticky},
		"usr/lib/jdbc.jar":  {Type: buildahtest.TypeFile, Mode: 0o644, SHA256: sha("jar")},
		"var/cache/ignored": dir,
	}
	got := buildahtest.Tree{
		"home/wso2carbon":   {Type: buildahtest.TypeDir, Mode: 0o755},
		"lib":               {Type: buildahtest.TypeDir, Mode: 0o755},
		"lib/jdbc.jar":      {Type: buildahtest.TypeFile, Mode: 0o644, SHA256: sha("jar")},
		"etc/passwd":        {Type: buildahtest.TypeFile, Mode: 0o644, SHA256: sha("wso2")},
		"tmp":               {Type: buildahtest.TypeDir, Mode: 0o777},
		"var/cache/ignored": {Type: buildahtest.TypeFile},
	}
	wantDiff := []string{
		"etc/passwd (file): content sha256:" + sha("wso2")[:12] + ", want sha256:" + sha("root")[:12],
		"home/wso2carbon (dir): owner 0:0, want 802:802; mode 0755, want 0750",
		"lib: got dir 0:0 0755, want symlink 0:0 -> usr/lib",
		"lib/jdbc.jar: not wanted (got file 0:0 0644 sha256:" + sha("jar")[:12] + ")",
		"tmp (dir): mode 0777, want 1777",
		"usr/lib/jdbc.jar: missing (want file 0:0 0644 sha256:" + sha("jar")[:12] + ")",
	}
	if d := buildahtest.Diff(want, got, buildahtest.Ignore("var/cache")); !slices.Equal(d, wantDiff) {
		t.Errorf("Diff:\n\t%s\nwant\n\t%s", strings.Join(d, "\n\t"), strings.Join(wantDiff, "\n\t"))
	}
	if d := buildahtest.Diff(want, want); d != nil {
		t.Errorf("Diff of a tree with itself: %q", d)
	}
}

// NewRegctl's regctl reaches a plain-HTTP registry, and its configuration is the test's own: regctl saves it
// in the test's directory, not in the user's home.
func TestNewRegctl(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "wso2/am:1", registrytest.Image{})
	regctl := buildahtest.NewRegctl(t, reg.Host)

	out, err := regctl.Run("image", "digest", reg.Ref("wso2/am:1"))
	if err != nil || strings.TrimSpace(out) != img.Digest {
		t.Errorf("regctl image digest: %v, printed %q; want %s", err, out, img.Digest)
	}
	out, err = regctl.Run("config", "get", "--format", "{{.Filename}}")
	if err != nil {
		t.Fatalf("regctl config get: %v\n%s", err, out)
	}
	file := strings.TrimSpace(out)
	if home, _ := os.UserHomeDir(); home != "" && strings.HasPrefix(file, home+string(filepath.Separator)) {
		t.Errorf("regctl's configuration is %s, in the user's home %s", file, home)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), reg.Host) {
		t.Errorf("regctl's configuration %s: %v; want it to hold the registry %s:\n%s", file, err, reg.Host, b)
	}
}
