package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
)

func TestSigning(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cosign.key", "cosign.pub", "old.pub"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := writeFile(t, filepath.Join(dir, "h.yaml"), `signing:
  key: cosign.key
  password: ${COSIGN_PASSWORD}
  public_keys: [cosign.pub, old.pub]
`)
	if _, err := config.Load(path, event.StageRebuilder); err == nil ||
		!strings.Contains(err.Error(), "signing.password: environment variable COSIGN_PASSWORD is not set") {
		t.Fatalf("without the password: %v", err)
	}
	t.Setenv("COSIGN_PASSWORD", "s3cr3t")
	c, err := config.Load(path, event.StageRebuilder)
	if err != nil {
		t.Fatal(err)
	}
	if c.Signing.Key != filepath.Join(dir, "cosign.key") || c.Signing.Password != "s3cr3t" ||
		strings.Join(c.Signing.PublicKeys, ",") != filepath.Join(dir, "cosign.pub")+","+filepath.Join(dir, "old.pub") {
		t.Errorf("signing %+v (paths are relative to the file)", c.Signing)
	}
	// The inspector does not sign: it needs no password.
	t.Setenv("COSIGN_PASSWORD", "")
	os.Unsetenv("COSIGN_PASSWORD")
	if _, err := config.Load(path, event.StageInspector); err != nil {
		t.Errorf("the inspector: %v", err)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"signing:\n  key: missing.key\n", "h.yaml:2: signing.key: cannot read"},
		{"signing:\n  password: x\n", "h.yaml:2: signing.password: is set, but signing.key is not"},
		{"signing:\n  key: cosign.key\n  public_keys: [gone.pub]\n", "h.yaml:3: signing.public_keys[0]: cannot read"},
		{"signing:\n  public_keys: [gone.pub]\n", "h.yaml:2: signing.public_keys[0]: cannot read"},
	} {
		p := writeFile(t, filepath.Join(dir, "bad.yaml"), tc.yaml)
		if _, err := config.Load(p, event.StageRebuilder); err == nil || !strings.Contains(err.Error(), strings.Replace(tc.want, "h.yaml", "bad.yaml", 1)) {
			t.Errorf("%q: %v; want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestGatesThatVerifyNeedPublicKeys: signed and provenance verify against signing.public_keys; config check
// refuses either without them, naming the file, the line and the key, and accepts them with a key listed.
func TestGatesThatVerifyNeedPublicKeys(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cosign.pub"), "x")
	const chain = `registries:
  - host: harbor.acme.example
    harbor: true
promotions:
  - name: acme-am
    stages:
      - repository: harbor.acme.example/wso2-dev/acme-am
      - repository: harbor.acme.example/wso2-prod/acme-am
        gates:
          %s
`
	for _, tc := range []struct{ gate, want string }{
		{"signed: true", "h.yaml:10: promotions[0].stages[1].gates.signed: needs signing.public_keys"},
		{"provenance: {base: [registry.wso2.com/**]}", "h.yaml:10: promotions[0].stages[1].gates.provenance: needs signing.public_keys: " +
			"the gate verifies the provenance attestation against them"},
	} {
		file := fmt.Sprintf(chain, tc.gate)
		p := writeFile(t, filepath.Join(dir, "h.yaml"), file)
		if _, err := config.Load(p, event.StagePromoter); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s without public keys: %v\nwant %q", tc.gate, err, tc.want)
		}
		p = writeFile(t, filepath.Join(dir, "h.yaml"), file+"signing:\n  public_keys: [cosign.pub]\n")
		if c, err := config.Load(p, event.StagePromoter); err != nil {
			t.Errorf("%s with a public key: %v", tc.gate, err)
		} else if g := c.Promotions[0].Stages[1].Gates; strings.HasPrefix(tc.gate, "provenance") &&
			(g.Provenance == nil || strings.Join(g.Provenance.Base, ",") != "registry.wso2.com/**") {
			t.Errorf("provenance read as %+v", g.Provenance)
		}
	}
	// An empty base list is refused at load too.
	p := writeFile(t, filepath.Join(dir, "h.yaml"), fmt.Sprintf(chain, "provenance: {base: []}")+"signing:\n  public_keys: [cosign.pub]\n")
	if _, err := config.Load(p, event.StagePromoter); err == nil ||
		!strings.Contains(err.Error(), "h.yaml:10: promotions[0].stages[1].gates.provenance.base: must list at least one glob") {
		t.Errorf("provenance: {base: []}: %v", err)
	}
}
