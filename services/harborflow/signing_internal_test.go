package harborflow

import (
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/config"
)

// loadSigner reads cosign's encrypted key with its password; a wrong one is an error naming the key file, never the password.
func TestLoadSigner(t *testing.T) {
	const key = "../../pkg/signature/testdata/cosign.key" // written by cosign generate-key-pair, password harborflow-test
	if _, err := loadSigner(config.Signing{Key: key, Password: "harborflow-test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSigner(config.Signing{Key: key, Password: "n0t-th3-pa55"}); err == nil || !strings.Contains(err.Error(), "signing.key "+key) ||
		strings.Contains(err.Error(), "n0t-th3-pa55") {
		t.Errorf("a wrong password: %v", err)
	}
}
