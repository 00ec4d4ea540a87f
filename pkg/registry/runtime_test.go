package registry_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// fidelityContext is what a customer adds to a WSO2 base: a keystore into the base's 0700 directory, a JDBC
// driver through the base's /lib -> usr/lib link, a configuration under directories the base does not have,
// and a link next to the product directory.
var fidelityContext = map[string]contextEntry{
	"home/wso2carbon/security/custom.jks": {content: "acme keystore\n", mode: 0o600},
	"lib/jdbc.jar":                        {content: "PK\x03\x04 acme jdbc driver", mode: 0o644},
	"opt/acme/conf/app.yaml":              {content: "tenant: acme\n", mode: 0o644},
	"home/wso2carbon/current":             {link: "wso2am-4.2.0"},
}

// An overlay's result, mounted the way runtimes mount images, must be what a Dockerfile that COPYs the same
// files onto the base makes, on overlay storage (podman, CRI-O, containerd) as on vfs: the base's directories
// keep their owner and mode, /lib stays a link and the JDBC driver lands in /usr/lib, missing directories
// belong to the owner. Reading the layer's tar headers cannot show any of this.
func TestOverlayFidelity(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	over := buildahtest.NewStore(t, buildah.DriverOverlay, reg.Host)
	vfs := buildahtest.NewStore(t, buildah.DriverVFS, reg.Host)
	buildahtest.Tool(t, "crane")
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	dir := writeContext(t, fidelityContext)
	const owner = "802:802"

	for _, tc := range []struct {
		format    string
		platforms []string
	}{
		{"oci", []string{"linux/amd64"}},
		{"oci", []string{"linux/amd64", "linux/arm64"}},
		{"docker", []string{"linux/arm64"}},
		{"docker", []string{"linux/amd64", "linux/arm64"}},
	} {
		name := fmt.Sprintf("%s-%dplatforms", tc.format, len(tc.platforms))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			repo := "wso2/am-" + name
			dig := over.BuildBase(t, reg.Host, repo+":4.2.0.16", buildahtest.BaseSpec{Format: tc.format, Platforms: tc.platforms, UpdateLevel: 16})
			base := reg.Ref(repo + "@" + dig)
			w, err := c.Overlay(ctxT(t), base, reg.Ref("acme/am-"+name), registry.Layer{Dir: dir, Owner: owner}, registry.Edit{})
			if err != nil {
				t.Fatalf("Overlay: %v", err)
			}
			if out, err := buildahtest.RunTool(t, "crane", "validate", "--insecure", "--remote", w.Ref); err != nil || !strings.HasPrefix(out, "PASS: ") {
				t.Errorf("crane validate of the overlay %s: %v\n%s", w.Ref, err, out)
			}
			for _, p := range tc.platforms {
				t.Run(strings.ReplaceAll(p, "/", "-"), func(t *testing.T) {
					t.Parallel()
					want := over.DockerfileTree(t, base, dir, owner, p)
					got := over.Tree(t, w.Ref, p)
					if d := buildahtest.Diff(want, got); d != nil {
						t.Errorf("%s on overlay storage differs from FROM base + COPY --chown=%s of each file (%d differences):\n\t%s",
							p, owner, len(d), strings.Join(d, "\n\t"))
					}
					if d := buildahtest.Diff(vfs.Tree(t, w.Ref, p), got); d != nil {
						t.Errorf("%s reads differently on overlay storage than on vfs (%d differences; want: vfs, got: overlay):\n\t%s",
							p, len(d), strings.Join(d, "\n\t"))
					}
				})
			}
		})
	}
}
