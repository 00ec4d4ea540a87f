package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

func TestPutBlobThenBlob(t *testing.T) {
	reg := registrytest.New(t)
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo := reg.Ref("wso2/am")
	content := []byte(`{"critical":{}}`)

	d, err := c.PutBlob(ctx, repo, "application/json", content)
	if err != nil {
		t.Fatalf("PutBlob: %v", err)
	}
	if d.Digest != digest.FromBytes(content).String() || d.Size != int64(len(content)) || d.MediaType != "application/json" {
		t.Errorf("PutBlob = %+v", d)
	}
	if got := reg.ReadBlob(t, "wso2/am", d.Digest); string(got) != string(content) {
		t.Errorf("the registry has %q, want %q", got, content)
	}
	// A blob the repository has is not uploaded again.
	_, before := counter.BlobBytes()
	if before != int64(len(content)) {
		t.Errorf("PutBlob uploaded %d bytes, want %d", before, len(content))
	}
	if _, err := c.PutBlob(ctx, repo, "application/json", content); err != nil {
		t.Fatalf("second PutBlob: %v", err)
	}
	if _, after := counter.BlobBytes(); after != before {
		t.Errorf("second PutBlob uploaded %d bytes again", after-before)
	}

	got, err := c.Blob(ctx, repo, d.Digest, 1<<10)
	if err != nil || string(got) != string(content) {
		t.Errorf("Blob = %q, %v; want %q", got, err, content)
	}
	if _, err := c.Blob(ctx, repo, d.Digest, 4); err == nil {
		t.Errorf("Blob with a limit below the size succeeded")
	}
	if _, err := c.Blob(ctx, repo, digest.FromString("absent").String(), 1<<10); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Blob of an absent digest = %v, want ErrNotFound", err)
	}
}
