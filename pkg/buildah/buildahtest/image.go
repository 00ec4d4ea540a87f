package buildahtest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildTime is the creation time of the images a Store builds, and buildah's commit --timestamp makes it the
// modification time of every file of their layers, so that the same content gives the same layer digests.
var buildTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// BaseSpec describes a base image for BuildBase.
type BaseSpec struct {
	// Format is the image format: "oci" (the default) or "docker" (buildah's --format, and Docker schema 2
	// manifests and manifest list in the registry).
	Format string
	// Platforms are os/arch[/variant] (default linux/amd64). One platform gives an image manifest, several
	// an index (a manifest list for Docker) of one image per platform, in this order.
	Platforms []string
	// UpdateLevel is the update_level label, and the content of the product's updates/level file.
	UpdateLevel int
}

// BuildBase builds a WSO2-shaped base image without running anything in it, pushes it to host/repoTag
// ("repository:tag") and returns the digest of its manifest or index. host must be a registry given to
// NewStore.
//
// Each platform's image has two layers, made by writing into the mounted container and committing:
//
//   - the OS layer, usr-merged: /usr/lib, /usr/bin, /etc, /home and /var (0755, root), /root (0700), /tmp
//     (1777), symbolic links /lib -> usr/lib and /bin -> usr/bin, files in /etc (/etc/shadow 0640 0:42) and
//     /usr (/usr/bin/su setuid), some naming the architecture. It is the same for every base of a
//     platform, so a new update level leaves it unchanged. There is no /opt.
//   - the product layer: /home/wso2carbon 802:802 0750, /home/wso2carbon/security 802:802 0700 holding
//     wso2carbon.jks (0600), and /home/wso2carbon/wso2am-4.2.0 (802:802, 0755 directories) with
//     bin/api-manager.sh (0755), repository/conf/deployment.toml (0640), an empty repository/components/lib,
//     updates/level holding the update level and updates/platform naming the platform.
//
// The config has the label update_level, user 802 and working directory /home/wso2carbon.
func (s *Store) BuildBase(t testing.TB, host, repoTag string, spec BaseSpec) string {
	t.Helper()
	target := host + "/" + repoTag
	s.checkHost(t, target)
	format := spec.Format
	if format == "" {
		format = "oci"
	}
	platforms := spec.Platforms
	if len(platforms) == 0 {
		platforms = []string{"linux/amd64"}
	}
	images := make([]string, len(platforms))
	for i, p := range platforms {
		images[i] = s.baseImage(t, p, format, spec.UpdateLevel)
	}
	return s.push(t, images, format, target)
}

// push pushes the images of the store to target: the one image as it is, or several as a new manifest list.
// It returns the digest of what was pushed.
func (s *Store) push(t testing.TB, images []string, format, target string) string {
	t.Helper()
	manifestType := map[string]string{"oci": "oci", "docker": "v2s2"}[format]
	if manifestType == "" {
		t.Fatalf("image format %q: want oci or docker", format)
	}
	digestFile := filepath.Join(t.TempDir(), "digest")
	if len(images) == 1 {
		s.run(t, "", "push", "--quiet", "--format", manifestType, "--digestfile", digestFile,
			"--signature-policy", s.env.Policy, "--authfile", s.env.AuthFile, images[0], "docker://"+target)
		return readDigest(t, digestFile)
	}
	list := s.name("list")
	s.run(t, "", "manifest", "create", list)
	for _, img := range images {
		s.run(t, "", "manifest", "add", list, "containers-storage:"+img)
	}
	return s.pushList(t, list, manifestType, target, digestFile)
}

// pushList pushes the manifest list list and its images to target and returns its digest.
func (s *Store) pushList(t testing.TB, list, manifestType, target, digestFile string) string {
	t.Helper()
	s.run(t, "", "manifest", "push", "--all", "--quiet", "--format", manifestType, "--digestfile", digestFile,
		"--signature-policy", s.env.Policy, "--authfile", s.env.AuthFile, list, "docker://"+target)
	return readDigest(t, digestFile)
}

// readDigest reads the digest buildah wrote to file.
func readDigest(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the digest buildah wrote: %v", err)
	}
	d := strings.TrimSpace(string(b))
	if !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("buildah wrote digest %q", d)
	}
	return d
}

// platformPattern is os/arch[/variant].
var platformPattern = regexp.MustCompile(`^([a-z0-9]+)/([a-z0-9_]+)(?:/([a-z0-9]+))?$`)

// platformArgs are the arguments of buildah config that set platform.
func platformArgs(platform string) ([]string, error) {
	m := platformPattern.FindStringSubmatch(platform)
	if m == nil {
		return nil, fmt.Errorf("platform %q: want os/arch[/variant]", platform)
	}
	args := []string{"--os", m[1], "--arch", m[2]}
	if m[3] != "" {
		args = append(args, "--variant", m[3])
	}
	return args, nil
}

// baseImage builds the base image of one platform and returns its name in the store.
func (s *Store) baseImage(t testing.TB, platform, format string, level int) string {
	t.Helper()
	ctr := s.name("base")
	s.run(t, "", "from", "--quiet", "--pull=never", "--name", ctr, s.osImage(t, platform))
	root := s.run(t, "", "mount", ctr)
	if err := writeNodes(root, productLayer(platform, level)); err != nil {
		t.Fatalf("writing the product layer: %v", err)
	}
	pa, err := platformArgs(platform)
	if err != nil {
		t.Fatal(err)
	}
	s.run(t, "", append(append([]string{"config"}, pa...),
		"--created-by", "harborflow test product layer", "--label", "update_level="+strconv.Itoa(level),
		"--user", "802", "--workingdir", "/home/wso2carbon", ctr)...)
	img := "localhost/" + s.name("base")
	s.commit(t, ctr, img, format)
	return img
}

// osImage returns the name of the store's OS image for platform, building it the first time.
func (s *Store) osImage(t testing.TB, platform string) string {
	t.Helper()
	s.mu.Lock()
	o := s.osImages[platform]
	if o == nil {
		o = &osImage{}
		s.osImages[platform] = o
	}
	s.mu.Unlock()
	o.once.Do(func() { o.name, o.err = s.buildOS(platform) })
	if o.err != nil {
		t.Fatalf("building the OS image for %s: %v", platform, o.err)
	}
	return o.name
}

// buildOS builds the OS image of platform (see BuildBase). It reports failures as errors: the image is built
// once for every test that uses the store.
func (s *Store) buildOS(platform string) (string, error) {
	pa, err := platformArgs(platform)
	if err != nil {
		return "", err
	}
	cfg := append([]string{"config", "--created-by", "harborflow test OS layer"}, pa...)
	ctr, img := s.name("os"), "localhost/"+s.name("os")
	steps := [][]string{{"from", "--quiet", "--name", ctr, "scratch"}, {"mount", ctr}}
	var root string
	for i, args := range steps {
		out, stderr, err := s.exec("", args...)
		if err != nil {
			return "", fmt.Errorf("buildah %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr, 10))
		}
		if i == 1 {
			root = strings.TrimSpace(out)
		}
	}
	if err := writeNodes(root, osLayer(platform)); err != nil {
		return "", fmt.Errorf("writing the OS layer: %w", err)
	}
	for _, args := range [][]string{append(cfg, ctr), commitArgs(ctr, img, "oci")} {
		if _, stderr, err := s.exec("", args...); err != nil {
			return "", fmt.Errorf("buildah %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr, 10))
		}
	}
	return img, nil
}

// commit commits the container ctr to the image img in format and removes the container.
func (s *Store) commit(t testing.TB, ctr, img, format string) {
	t.Helper()
	s.run(t, "", commitArgs(ctr, img, format)...)
}

// commitArgs are the arguments of a reproducible commit of ctr to img, removing the container.
func commitArgs(ctr, img, format string) []string {
	return []string{"commit", "--quiet", "--rm", "--format", format, "--identity-label=false",
		"--timestamp", strconv.FormatInt(buildTime.Unix(), 10), ctr, img}
}

// node is a file system entry BuildBase writes.
type node struct {
	path     string
	typ      string // TypeDir, TypeFile or TypeSymlink
	mode     fs.FileMode
	uid, gid int
	content  string // a file's
	link     string // a symbolic link's target
}

func dir(path string, mode fs.FileMode, uid, gid int) node {
	return node{path: path, typ: TypeDir, mode: mode, uid: uid, gid: gid}
}

func file(path string, mode fs.FileMode, uid, gid int, content string) node {
	return node{path: path, typ: TypeFile, mode: mode, uid: uid, gid: gid, content: content}
}

func symlink(path, target string) node {
	return node{path: path, typ: TypeSymlink, link: target}
}

// osLayer is the OS layer of platform (see BuildBase).
func osLayer(platform string) []node {
	return []node{
		dir("usr", 0o755, 0, 0),
		dir("usr/bin", 0o755, 0, 0),
		file("usr/bin/sh", 0o755, 0, 0, "#!test shell for "+platform+"\n"),
		file("usr/bin/su", 0o755|fs.ModeSetuid, 0, 0, "#!test su for "+platform+"\n"),
		dir("usr/lib", 0o755, 0, 0),
		file("usr/lib/libc.so.6", 0o755, 0, 0, "test libc for "+platform+"\n"),
		symlink("lib", "usr/lib"),
		symlink("bin", "usr/bin"),
		dir("etc", 0o755, 0, 0),
		file("etc/os-release", 0o644, 0, 0, "NAME=\"harborflow test OS\"\nID=hftest\nVERSION_ID=1\n"),
		file("etc/passwd", 0o644, 0, 0, "root:x:0:0:root:/root:/bin/sh\nwso2carbon:x:802:802::/home/wso2carbon:/bin/sh\n"),
		file("etc/group", 0o644, 0, 0, "root:x:0:\nshadow:x:42:\nwso2:x:802:\n"),
		file("etc/shadow", 0o640, 0, 42, "root:*:19000:0:99999:7:::\nwso2carbon:!:19000::::::\n"),
		dir("home", 0o755, 0, 0),
		dir("root", 0o700, 0, 0),
		dir("tmp", 0o777|fs.ModeSticky, 0, 0),
		dir("var", 0o755, 0, 0),
	}
}

// productLayer is the product layer of platform at update level (see BuildBase).
func productLayer(platform string, level int) []node {
	const am = "home/wso2carbon/wso2am-4.2.0"
	return []node{
		dir("home/wso2carbon", 0o750, 802, 802),
		dir("home/wso2carbon/security", 0o700, 802, 802),
		file("home/wso2carbon/security/wso2carbon.jks", 0o600, 802, 802, "test keystore\n"),
		dir(am, 0o755, 802, 802),
		dir(am+"/bin", 0o755, 802, 802),
		file(am+"/bin/api-manager.sh", 0o755, 802, 802, "#!/bin/sh\necho api-manager\n"),
		dir(am+"/repository", 0o755, 802, 802),
		dir(am+"/repository/conf", 0o755, 802, 802),
		file(am+"/repository/conf/deployment.toml", 0o640, 802, 802, "[server]\nhostname = \"localhost\"\n"),
		dir(am+"/repository/components", 0o755, 802, 802),
		dir(am+"/repository/components/lib", 0o755, 802, 802),
		dir(am+"/updates", 0o755, 802, 802),
		file(am+"/updates/level", 0o644, 802, 802, strconv.Itoa(level)+"\n"),
		file(am+"/updates/platform", 0o644, 802, 802, platform+"\n"),
	}
}

// writeNodes writes nodes under root, parents before children, with their owners, modes and buildTime.
func writeNodes(root string, nodes []node) error {
	for _, n := range nodes {
		p := filepath.Join(root, filepath.FromSlash(n.path))
		var err error
		switch n.typ {
		case TypeDir:
			err = os.Mkdir(p, 0o700)
		case TypeFile:
			err = os.WriteFile(p, []byte(n.content), 0o600)
		case TypeSymlink:
			err = os.Symlink(n.link, p)
		}
		if err == nil {
			err = os.Lchown(p, n.uid, n.gid)
		}
		if err == nil && n.typ != TypeSymlink {
			// After the chown, which clears setuid and setgid bits.
			err = os.Chmod(p, n.mode)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", n.path, err)
		}
	}
	return nil
}

// DockerfileTree is the reference for adding contextDir to baseRef as the files' owner (uid:gid): it builds
// for platform, in the store,
//
//	FROM <baseRef>
//	COPY --chown=<owner> ["files/<rel>", "/<rel>"]           for a regular file
//	COPY --chown=<owner> ["links/<n>/", "/<dir of rel>/"]    for a symbolic link
//
// in path order of contextDir's regular files and symbolic links, and returns the built image's Tree. COPY
// follows a symbolic link named as its source, so each link is copied as the one entry of a directory of its
// own (links/<n>), whose content COPY copies as it is. The build context holds copies of contextDir's files
// (with their modes) and links.
//
// This is what `docker build` or `buildah bud` make of the same request: a file lands where the base's
// symbolic links lead (lib/x.jar in /usr/lib when /lib -> usr/lib), existing parent directories keep the
// base's owner and mode, missing ones are made with owner's ownership and mode 0755.
func (s *Store) DockerfileTree(t testing.TB, baseRef, contextDir, owner, platform string) Tree {
	t.Helper()
	s.checkHost(t, baseRef)
	buildContext := t.TempDir()
	var df strings.Builder
	fmt.Fprintf(&df, "FROM %s\n", baseRef)
	copyLine := func(src, dst string) {
		args, _ := json.Marshal([]string{src, dst}) // strings always encode
		fmt.Fprintf(&df, "COPY --chown=%s %s\n", owner, args)
	}
	links := 0
	// WalkDir goes in lexical order.
	err := filepath.WalkDir(contextDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(contextDir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type().IsRegular():
			if err := copyFile(path, filepath.Join(buildContext, "files", rel)); err != nil {
				return err
			}
			copyLine("files/"+rel, "/"+rel)
		case d.Type()&fs.ModeSymlink != 0:
			links++
			dir := fmt.Sprintf("links/%d", links)
			target, err := os.Readlink(path)
			if err == nil {
				err = os.MkdirAll(filepath.Join(buildContext, dir), 0o755)
			}
			if err == nil {
				err = os.Symlink(target, filepath.Join(buildContext, dir, filepath.Base(path)))
			}
			if err != nil {
				return err
			}
			parent := strings.TrimSuffix("/"+rel, "/"+filepath.Base(path))
			copyLine(dir+"/", parent+"/")
		default:
			return fmt.Errorf("%s is a %s; only regular files and symbolic links can be added", rel, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("making the reference build context from %s: %v", contextDir, err)
	}
	dockerfile := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(dockerfile, []byte(df.String()), 0o600); err != nil {
		t.Fatalf("writing the reference Dockerfile: %v", err)
	}
	iidFile := filepath.Join(t.TempDir(), "iid")
	s.run(t, buildContext, "bud", "--quiet", "--isolation", "chroot", "--platform", platform, "--pull=always",
		"--identity-label=false", "--signature-policy", s.env.Policy, "--authfile", s.env.AuthFile,
		"--file", dockerfile, "--iidfile", iidFile, buildContext)
	iid, err := os.ReadFile(iidFile)
	if err != nil {
		t.Fatalf("reading the built image's ID: %v", err)
	}
	return s.imageTree(t, strings.TrimPrefix(strings.TrimSpace(string(iid)), "sha256:"))
}

// copyFile copies the regular file src to dst, making dst's parents, with src's permission bits.
func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

// DerivedSpec describes a customer image for BuildDerived.
type DerivedSpec struct {
	// Base is the image to build FROM, host/repository@digest or :tag on a registry given to NewStore.
	Base string
	// Platforms are os/arch[/variant] (default linux/amd64), built by one buildah bud.
	Platforms []string
	// Dockerfile is the Dockerfile after its FROM line: COPY, ENV, LABEL and the like; nothing can be RUN.
	Dockerfile string
	// Context is the build context directory (default: an empty one).
	Context string
	// Format is the image format: "oci" (the default) or "docker".
	Format string
}

// BuildDerived builds a customer image the way a customer's CI does with buildah, with
//
//	buildah bud --platform <platforms> --manifest <list>    FROM <Base> + Dockerfile
//	buildah manifest push --all <list> docker://<host>/<repoTag>
//
// and returns the digest of the pushed index (or manifest list). host must be a registry given to NewStore.
// The base is pulled for every platform (--pull=always), as on a CI machine that does not have it: an image
// of the store with the same digest (one BuildBase made) would otherwise stand in for it, and buildah would
// name that local image in the org.opencontainers.image.base.name annotation and the history.
func (s *Store) BuildDerived(t testing.TB, host, repoTag string, spec DerivedSpec) string {
	t.Helper()
	target := host + "/" + repoTag
	s.checkHost(t, target)
	s.checkHost(t, spec.Base)
	format := spec.Format
	if format == "" {
		format = "oci"
	}
	platforms := spec.Platforms
	if len(platforms) == 0 {
		platforms = []string{"linux/amd64"}
	}
	contextDir := spec.Context
	if contextDir == "" {
		contextDir = t.TempDir()
	}
	dockerfile := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(dockerfile, []byte("FROM "+spec.Base+"\n"+spec.Dockerfile), 0o600); err != nil {
		t.Fatalf("writing the Dockerfile: %v", err)
	}
	list := s.name("derived")
	s.run(t, contextDir, "bud", "--quiet", "--isolation", "chroot", "--platform", strings.Join(platforms, ","),
		"--manifest", list, "--format", format, "--pull=always", "--signature-policy", s.env.Policy,
		"--authfile", s.env.AuthFile, "--file", dockerfile, contextDir)
	manifestType := map[string]string{"oci": "oci", "docker": "v2s2"}[format]
	if manifestType == "" {
		t.Fatalf("image format %q: want oci or docker", format)
	}
	return s.pushList(t, list, manifestType, target, filepath.Join(t.TempDir(), "digest"))
}
