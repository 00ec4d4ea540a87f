package harborflow_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// TestRetentionCommands: `harborflow retention plan` prints what would go and why and deletes nothing;
// `apply` deletes it; `restore` puts one back with its tag.
func TestRetentionCommands(t *testing.T) {
	ctx := context.Background()
	hb := harbortest.New(t)
	user, pass := hb.Admin()
	hb.CreateProject(t, "wso2-dev", false, nil)
	src := registrytest.New(t)
	rc := regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: hb.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: pass},
		rcconfig.Host{Name: src.Host, TLS: rcconfig.TLSDisabled}))
	digests := map[string]string{}
	for _, tag := range []string{"4.2.0.1.1", "4.2.0.2.2", "4.2.0.3.3"} {
		digests[tag] = src.PushImage(t, "am:"+tag, registrytest.Image{User: "802", Layer: tag}).Digest
		from, _ := ref.New(src.Host + "/am:" + tag)
		to, _ := ref.New(hb.Host() + "/wso2-dev/am:" + tag)
		if err := rc.ImageCopy(ctx, from, to); err != nil {
			t.Fatal(err)
		}
	}
	js := bustest.Start(t)
	path := filepath.Join(t.TempDir(), "harborflow.yaml")
	cfg := fmt.Sprintf(`nats:
  url: %s
registries:
  - host: %s
    harbor: true
    plain_http: true
    username: %s
    password: %s
retention:
  - repositories: ["%s/wso2-*/am"]
    keep_per_version: 2
    dry_run: false
`, js.URL(), hb.Host(), user, pass, hb.Host())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := hb.Host() + "/wso2-dev/am"
	old := digests["4.2.0.1.1"]

	out, err := runCLI(t, "--config", path, "retention", "plan", repo)
	if err != nil || !strings.Contains(out, "1 to delete, 2 kept") ||
		!strings.Contains(out, "would delete "+old+" 4.2.0.1.1: older than the newest 2 of 4.2.0: 4.2.0.1.1 is number 3") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "--config", path, "retention", "plan", repo); err != nil || !strings.Contains(out, "would delete "+old) {
		t.Fatalf("the plan deleted something: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "--config", path, "retention", "apply", repo); err != nil || !strings.Contains(out, "deleted      "+old) {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "--config", path, "retention", "plan", repo); err != nil || !strings.Contains(out, "0 to delete, 2 kept") {
		t.Fatalf("plan after apply: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "--config", path, "retention", "restore", repo, old); err != nil || !strings.Contains(out, "restored "+repo+"@"+old+" with tags 4.2.0.1.1") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "--config", path, "retention", "plan", hb.Host()+"/other/am"); err == nil || !strings.Contains(err.Error(), "no retention policy matches") {
		t.Errorf("an unmatched repository: %v", err)
	}
}
