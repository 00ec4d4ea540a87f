package registry_test

import (
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

var twoPlatforms = []string{"linux/amd64", "linux/arm64"}

// customerDockerfile is what a customer's Dockerfile adds to a WSO2 base (COPY only: nothing can run for a
// foreign platform), from customerContext: a keystore into the base's 0700 directory, a JDBC driver through
// the base's /lib -> usr/lib link, a configuration under directories the base does not have, the product's
// configuration replaced, and config changes that make history entries without a layer.
const customerDockerfile = `COPY --chown=802:802 custom.jks /home/wso2carbon/security/custom.jks
COPY jdbc.jar /lib/jdbc.jar
COPY --chown=802:802 app.yaml /opt/acme/conf/app.yaml
COPY --chown=802:802 deployment.toml /home/wso2carbon/wso2am-4.2.0/repository/conf/deployment.toml
ENV ACME_TENANT=acme
LABEL com.acme.app=am
`

var customerContext = map[string]contextEntry{
	"custom.jks":      {content: "acme keystore\n", mode: 0o600},
	"jdbc.jar":        {content: "PK\x03\x04 acme jdbc driver", mode: 0o644},
	"app.yaml":        {content: "tenant: acme\n", mode: 0o644},
	"deployment.toml": {content: "[server]\nhostname = \"am.acme.example\"\n", mode: 0o640},
}

// platformImages reads repoRef (host/repository@digest or :tag; an OCI index or image, or a Docker manifest
// list or image) back from reg: each platform image (os/arch) with its config.
func platformImages(t *testing.T, reg *registrytest.Registry, repoRef string) map[string]image {
	t.Helper()
	repoRef = strings.TrimPrefix(repoRef, reg.Host+"/")
	repo, _, _ := strings.Cut(repoRef, "@")
	repo, _, _ = strings.Cut(repo, ":")
	_, body := reg.ReadManifest(t, repoRef)
	var top ociManifest
	mustUnmarshal(t, body, &top)
	out := map[string]image{}
	read := func(dig string, m ociManifest) {
		img := image{digest: dig, m: m}
		mustUnmarshal(t, reg.ReadBlob(t, repo, m.Config.Digest), &img.cfg)
		out[img.cfg.OS+"/"+img.cfg.Architecture] = img
	}
	if len(top.Manifests) == 0 {
		read("", top)
		return out
	}
	for _, d := range top.Manifests {
		var m ociManifest
		_, body := reg.ReadManifest(t, repo+"@"+d.Digest)
		mustUnmarshal(t, body, &m)
		read(d.Digest, m)
	}
	return out
}

// historyOf is the created_by and comment of each history entry of an image.
func historyOf(img image) []string {
	out := make([]string, len(img.cfg.History))
	for i, h := range img.cfg.History {
		out[i] = h.CreatedBy + " # " + h.Comment
	}
	return out
}

// A customer image, however it was built, must rebase onto a new update level of its base, and the result,
// mounted the way runtimes mount images, must read like the same customer image rebuilt on the new base.
// The bases are v15 and v16 of a WSO2-shaped image (the OS layer shared, the product layer not). The
// customer images on v15 are built the ways customers build them, which leave the old base named in
// different places or not at all:
//
//   - buildah bud --platform a,b --manifest: each platform manifest names the base's image for its
//     platform, the index nothing; Rebase is given no old base;
//   - regctl image mod --annotation-base: every manifest, the index and each platform's, names the base's
//     index; no old base given;
//   - the same with regctl image mod deleting buildah's annotations: none at all; the old base given;
//   - the Docker format (buildah --format docker): no annotations at all; the old base given;
//   - Overlay with Edit.BaseName and BaseDigest: as buildah, and the index names the base's index too; no old
//     base given.
//
// The reference for the first four is buildah building the same Dockerfile on v16, for the overlay an
// Overlay of the same directory onto v16. regctl's own rebase (--rebase-ref v15,v16) must give the same
// layers, diff IDs and history, and crane must find every result valid.
//
// The config is not compared with the rebuilt image's: what the customer's config inherited from the base
// (the update_level label) keeps the old base's values unless the Edit sets them, which the rebuilder does.
func TestRebaseFidelity(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	store := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
	regctl := buildahtest.NewRegctl(t, reg.Host)
	buildahtest.Tool(t, "crane")
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	customerDir := writeContext(t, customerContext)
	overlayDir := writeContext(t, fidelityContext)
	const owner = "802:802"

	// base is an update level of a base image: its tag, and its reference by digest.
	type base struct{ tag, ref string }
	buildBase := func(repo, format string, level int) base {
		tag := reg.Ref(repo + ":4.2.0." + strconv.Itoa(level))
		dig := store.BuildBase(t, reg.Host, strings.TrimPrefix(tag, reg.Host+"/"),
			buildahtest.BaseSpec{Format: format, Platforms: twoPlatforms, UpdateLevel: level})
		return base{tag: tag, ref: reg.Ref(repo + "@" + dig)}
	}
	digestOf := func(ref string) string { _, d, _ := strings.Cut(ref, "@"); return d }
	oci15, oci16 := buildBase("wso2/am", "oci", 15), buildBase("wso2/am", "oci", 16)
	docker15, docker16 := buildBase("wso2/am-docker", "docker", 15), buildBase("wso2/am-docker", "docker", 16)

	// trees reads each platform of ref.
	trees := func(ref string) map[string]buildahtest.Tree {
		out := map[string]buildahtest.Tree{}
		for _, p := range twoPlatforms {
			out[p] = store.Tree(t, ref, p)
		}
		return out
	}
	derived := func(repoTag string, from base, format string) string {
		dig := store.BuildDerived(t, reg.Host, repoTag, buildahtest.DerivedSpec{Base: from.tag, Platforms: twoPlatforms,
			Dockerfile: customerDockerfile, Context: customerDir, Format: format})
		repo, _, _ := strings.Cut(repoTag, ":")
		return reg.Ref(repo + "@" + dig)
	}
	// regctlMod runs regctl image mod src --create create args and returns what it pushed, by digest.
	regctlMod := func(t *testing.T, src, create string, args ...string) string {
		t.Helper()
		out, err := regctl.Run(append([]string{"image", "mod", src, "--create", create}, args...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		// It prints the tag it pushed.
		dig, err := regctl.Run("image", "digest", create)
		if err != nil {
			t.Fatalf("%v\n%s", err, dig)
		}
		repo, _, _ := strings.Cut(strings.TrimPrefix(create, reg.Host+"/"), ":")
		return reg.Ref(repo + "@" + lastLine(dig))
	}

	buildahOCI := derived("acme/am-buildah:1", oci15, "oci")
	wantOCI := trees(derived("acme/am-buildah-on16:1", oci16, "oci"))
	regctlOCI := regctlMod(t, buildahOCI, reg.Ref("acme/am-regctl:1"), "--annotation-base", oci15.tag+","+digestOf(oci15.ref))
	plainOCI := regctlMod(t, buildahOCI, reg.Ref("acme/am-plain:1"), "--annotation", "[*]"+annotBaseName, "--annotation", "[*]"+annotBaseDigest)
	buildahDocker := derived("acme/am-docker:1", docker15, "docker")
	wantDocker := trees(derived("acme/am-docker-on16:1", docker16, "docker"))
	overlay := func(b base, target string, edit registry.Edit) registry.Written {
		w, err := c.Overlay(ctxT(t), b.ref, reg.Ref(target), registry.Layer{Dir: overlayDir, Owner: owner}, edit)
		if err != nil {
			t.Fatalf("Overlay onto %s: %v", b.ref, err)
		}
		return w
	}
	overlaid := overlay(oci15, "acme/am-overlay", registry.Edit{BaseName: oci15.tag, BaseDigest: digestOf(oci15.ref)})
	wantOverlay := trees(overlay(oci16, "acme/am-overlay-on16", registry.Edit{}).Ref)

	// What each customer image says of its base, so that each case is what it claims to be.
	for _, tc := range []struct {
		ref                  string
		index, platformNames string // the base the index names, and each platform manifest ("" for none; "platform": its own platform's image)
	}{
		{buildahOCI, "", "platform"},
		{regctlOCI, digestOf(oci15.ref), digestOf(oci15.ref)},
		{plainOCI, "", ""},
		{buildahDocker, "", ""},
		{overlaid.Ref, digestOf(oci15.ref), "platform"},
	} {
		_, body := reg.ReadManifest(t, strings.TrimPrefix(tc.ref, reg.Host+"/"))
		var top ociManifest
		mustUnmarshal(t, body, &top)
		if got := top.Annotations[annotBaseDigest]; got != tc.index {
			t.Errorf("%s: the index names the base %q, want %q", tc.ref, got, tc.index)
		}
		basePlatforms := platformImages(t, reg, oci15.ref)
		for p, img := range platformImages(t, reg, tc.ref) {
			want := tc.platformNames
			if want == "platform" {
				want = basePlatforms[p].digest
			}
			if got := img.m.Annotations[annotBaseDigest]; got != want {
				t.Errorf("%s, %s: the manifest names the base %q, want %q", tc.ref, p, got, want)
			}
		}
	}

	for _, tc := range []struct {
		name     string
		customer string
		oldBase  string // "" when the annotations must suffice
		from, to base
		want     map[string]buildahtest.Tree
	}{
		{"buildah", buildahOCI, "", oci15, oci16, wantOCI},
		{"regctl", regctlOCI, "", oci15, oci16, wantOCI},
		{"plain", plainOCI, oci15.ref, oci15, oci16, wantOCI},
		{"docker", buildahDocker, docker15.ref, docker15, docker16, wantDocker},
		{"overlay", overlaid.Ref, "", oci15, oci16, wantOverlay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			edit := registry.Edit{BaseName: tc.to.tag, BaseDigest: digestOf(tc.to.ref)}
			if tc.oldBase != "" {
				// Nothing in the image names its base: without the old base given, there is nothing to go by.
				if _, err := c.Rebase(ctxT(t), tc.customer, "", tc.to.ref, reg.Ref("acme/rebased-"+tc.name), edit); !errors.Is(err, registry.ErrBaseMismatch) {
					t.Errorf("Rebase without the old base: %v; want ErrBaseMismatch", err)
				}
			}
			w, err := c.Rebase(ctxT(t), tc.customer, tc.oldBase, tc.to.ref, reg.Ref("acme/rebased-"+tc.name), edit)
			if err != nil {
				t.Fatalf("Rebase of %s onto %s (old base %q): %v", tc.customer, tc.to.ref, tc.oldBase, err)
			}
			if !slices.Equal(w.Platforms, twoPlatforms) && !slices.Equal(w.Platforms, []string{twoPlatforms[1], twoPlatforms[0]}) {
				t.Errorf("rebased platforms %v, want %v", w.Platforms, twoPlatforms)
			}
			if out, err := buildahtest.RunTool(t, "crane", "validate", "--insecure", "--remote", w.Ref); err != nil || !strings.HasPrefix(out, "PASS: ") {
				t.Errorf("crane validate of the rebased %s: %v\n%s", w.Ref, err, out)
			}

			// regctl's rebase, from the same old base to the same new one.
			theirs := platformImages(t, reg, regctlMod(t, tc.customer, reg.Ref("acme/regctl-rebased:"+tc.name),
				"--rebase-ref", tc.from.ref+","+tc.to.ref))
			ours := platformImages(t, reg, w.Ref)
			newBase := platformImages(t, reg, tc.to.ref)
			for _, p := range twoPlatforms {
				o, r := ours[p], theirs[p]
				if !slices.Equal(o.layerDigests(), r.layerDigests()) {
					t.Errorf("%s: layers %v, regctl's rebase gives %v", p, o.layerDigests(), r.layerDigests())
				}
				if !slices.Equal(o.cfg.RootFS.DiffIDs, r.cfg.RootFS.DiffIDs) {
					t.Errorf("%s: diff IDs %v, regctl's rebase gives %v", p, o.cfg.RootFS.DiffIDs, r.cfg.RootFS.DiffIDs)
				}
				if !slices.Equal(historyOf(o), historyOf(r)) {
					t.Errorf("%s: history\n\t%s\nregctl's rebase gives\n\t%s", p, strings.Join(historyOf(o), "\n\t"), strings.Join(historyOf(r), "\n\t"))
				}
				assertAnnotated(t, p, o.m.Annotations, map[string]string{annotBaseName: tc.to.tag, annotBaseDigest: newBase[p].digest})
			}

			for _, p := range twoPlatforms {
				t.Run(strings.ReplaceAll(p, "/", "-"), func(t *testing.T) {
					if d := buildahtest.Diff(tc.want[p], store.Tree(t, w.Ref, p)); d != nil {
						t.Errorf("%s rebased onto %s reads differently on overlay storage than the image rebuilt on it (%d differences; want: rebuilt, got: rebased):\n\t%s",
							p, tc.to.tag, len(d), strings.Join(d, "\n\t"))
					}
				})
			}
		})
	}
}

// lastLine is the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// checkBase runs regctl image check-base on ref and returns what it printed (standard output and error) and
// its exit status (-1 when it did not exit).
func checkBase(t *testing.T, regctl *buildahtest.Regctl, ref string) (string, int) {
	t.Helper()
	out, err := regctl.Run("image", "check-base", ref)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exit):
		return out, exit.ExitCode()
	}
	t.Fatalf("regctl image check-base %s: %v\n%s", ref, err, out)
	return "", -1
}

// `regctl image check-base` (which reads the top manifest's org.opencontainers.image.base.name and
// .base.digest, and compares the digest the name resolves to now with the one recorded) must say the base
// matches for what Overlay, Push and Rebase write when Edit.BaseName is a tag that points at
// Edit.BaseDigest, and that it has changed once the tag moves to a new update level: what a customer's CI
// uses to decide to rebuild. With regctl v0.11.7 it prints, on standard output:
//
//	base image matches          (exit status 0)
//	base image has changed      (exit status 1)
//
// A BaseName that names a tag the registry does not have makes check-base fail outright, neither matching
// nor changed (exit status 1):
//
//	failed to request manifest head <registry>/wso2/am:4.2.0.16: request failed: not found [http 404]:
//
// so a customer's CI could never tell that its base moved: that is why the rebuilder names the base with a
// tag that resolves to the base's digest, not with a tag of its own making.
func TestCheckBase(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	store := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
	regctl := buildahtest.NewRegctl(t, reg.Host)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	const floating = "wso2/am:4.2" // the tag that follows the newest update level
	v15 := store.BuildBase(t, reg.Host, "wso2/am:4.2.0.15", buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 15})
	v16 := store.BuildBase(t, reg.Host, floating, buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 16})
	edit := registry.Edit{BaseName: reg.Ref(floating), BaseDigest: v16}
	layer := registry.Layer{Dir: writeContext(t, fidelityContext), Owner: "802:802"}

	written := map[string]string{} // how it was written → what was written
	w, err := c.Overlay(ctxT(t), reg.Ref("wso2/am@"+v16), reg.Ref("acme/overlay"), layer, edit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	written["Overlay"] = w.Ref

	// Push writes what the dockerfile builder (pkg/buildah) built, from its OCI layout.
	builder, err := buildah.New([]buildah.Host{reg.Config().BuildahHost()}, buildah.WithWorkDir(t.TempDir()))
	if err != nil {
		t.Fatalf("buildah.New: %v", err)
	}
	buildDir := writeContext(t, map[string]contextEntry{
		"Dockerfile": {content: "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY jdbc.jar /lib/jdbc.jar\n", mode: 0o644},
		"jdbc.jar":   customerContext["jdbc.jar"],
	})
	res, err := builder.Build(ctxT(t), buildah.Spec{Context: buildDir, Platforms: twoPlatforms,
		BuildArgs: map[string]string{"BASE_IMAGE": reg.Ref("wso2/am@" + v16)}})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		if err := res.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	if w, err = c.Push(ctxT(t), res.Layout, reg.Ref("acme/push"), edit); err != nil {
		t.Fatalf("Push: %v", err)
	}
	written["Push"] = w.Ref

	customer := store.BuildDerived(t, reg.Host, "acme/am:1", buildahtest.DerivedSpec{Base: reg.Ref("wso2/am:4.2.0.15"),
		Platforms: twoPlatforms, Dockerfile: customerDockerfile, Context: writeContext(t, customerContext)})
	if w, err = c.Rebase(ctxT(t), reg.Ref("acme/am@"+customer), "", reg.Ref("wso2/am@"+v16), reg.Ref("acme/rebase"), edit); err != nil {
		t.Fatalf("Rebase from %s: %v", reg.Ref("wso2/am@"+v15), err)
	}
	written["Rebase"] = w.Ref

	for how, ref := range written {
		out, status := checkBase(t, regctl, ref)
		t.Logf("%s, base %s: regctl image check-base: exit status %d, printed %q", how, edit.BaseName, status, out)
		if status != 0 || strings.TrimSpace(out) != "base image matches" {
			t.Errorf("%s: regctl image check-base %s exits with %d, printing %q; want 0 and \"base image matches\"", how, ref, status, out)
		}
	}

	// The next update level moves the tag.
	if v17 := store.BuildBase(t, reg.Host, floating, buildahtest.BaseSpec{Platforms: twoPlatforms, UpdateLevel: 17}); v17 == v16 {
		t.Fatalf("update level 17 has the digest of 16, %s", v16)
	}
	for how, ref := range written {
		out, status := checkBase(t, regctl, ref)
		t.Logf("%s, base %s moved: regctl image check-base: exit status %d, printed %q", how, edit.BaseName, status, out)
		if status == 0 || !strings.Contains(out, "base image has changed") {
			t.Errorf("%s after %s moved: regctl image check-base %s exits with %d, printing %q; want a failure and \"base image has changed\"",
				how, edit.BaseName, ref, status, out)
		}
	}

	// A base name that does not resolve: check-base cannot tell anything.
	missing := registry.Edit{BaseName: reg.Ref("wso2/am:4.2.0.16"), BaseDigest: v16}
	if w, err = c.Overlay(ctxT(t), reg.Ref("wso2/am@"+v16), reg.Ref("acme/overlay"), layer, missing); err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	out, status := checkBase(t, regctl, w.Ref)
	t.Logf("Overlay, base %s (no such tag): regctl image check-base: exit status %d, printed %q", missing.BaseName, status, out)
	if status == 0 || strings.Contains(out, "base image matches") || strings.Contains(out, "base image has changed") {
		t.Errorf("base named by the missing tag %s: regctl image check-base %s exits with %d, printing %q; want a failure",
			missing.BaseName, w.Ref, status, out)
	}
}
