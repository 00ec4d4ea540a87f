package harborflow_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/services/harborflow"
)

// `harborflow dev harbor` serves the stand-in until its context ends, then stops cleanly.
func TestDevHarbor(t *testing.T) {
	pr, pw := io.Pipe()
	cmd := harborflow.NewCommand()
	cmd.SetOut(pw)
	cmd.SetErr(pw)
	cmd.SetArgs([]string{"dev", "harbor", "--listen", "127.0.0.1:0", "--data", t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the banner: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	fields := strings.Fields(line)
	if len(fields) < 5 || !strings.HasPrefix(fields[4], "http://127.0.0.1:") {
		t.Fatalf("banner %q", line)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fields[4]+"/api/v2.0/projects/library", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET library: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("dev harbor: %v", err)
	}
}
