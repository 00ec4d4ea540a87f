package harborflow_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/services/harborflow"
)

// startDevHarbor runs `harborflow dev harbor` with args until its banner, and returns the lines it printed
// before the banner, the stand-in's URL and a stop that ends it and returns its error.
func startDevHarbor(t *testing.T, args ...string) (printed []string, url string, stop func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	cmd := harborflow.NewCommand()
	cmd.SetOut(pw)
	cmd.SetErr(pw)
	cmd.SetArgs(append([]string{"dev", "harbor", "--listen", "127.0.0.1:0"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		_ = pw.Close()
	}()
	stop = func() error {
		cancel()
		return <-done
	}
	r := bufio.NewReader(pr)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the banner (after %q): %v; dev harbor: %v", printed, err, stop())
		}
		if !strings.HasPrefix(line, "harbor stand-in listening on ") {
			printed = append(printed, strings.TrimSpace(line))
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 5 || !strings.HasPrefix(fields[4], "http://127.0.0.1:") {
			t.Fatalf("banner %q", line)
		}
		go func() { _, _ = io.Copy(io.Discard, r) }()
		return printed, fields[4], stop
	}
}

// getProject reads a project through the stand-in's API as the administrator; nil when it does not exist.
func getProject(t *testing.T, url, name string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/api/v2.0/projects/"+name, nil)
	req.SetBasicAuth("admin", "Harbor12345")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET project %s: %d", name, resp.StatusCode)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// `harborflow dev harbor` serves the stand-in until its context ends, then stops cleanly.
func TestDevHarbor(t *testing.T) {
	_, url, stop := startDevHarbor(t, "--data", t.TempDir())
	if getProject(t, url, "library") == nil {
		t.Error("no project library")
	}
	if err := stop(); err != nil {
		t.Errorf("dev harbor: %v", err)
	}
}

// --project makes the projects `make run` needs before the banner; a restart on the same data keeps them.
func TestDevHarborProjects(t *testing.T) {
	data := t.TempDir()
	args := []string{"--data", data, "--project", "wso2-dev:auto_scan", "--project", "wso2-prod"}
	printed, url, stop := startDevHarbor(t, args...)
	if want := "project wso2-dev: created (auto_scan true)|project wso2-prod: created (auto_scan false)"; strings.Join(printed, "|") != want {
		t.Errorf("printed %q, want %q", printed, want)
	}
	for name, autoScan := range map[string]any{"wso2-dev": "true", "wso2-prod": nil} {
		p := getProject(t, url, name)
		if p == nil {
			t.Fatalf("no project %s", name)
		}
		md, _ := p["metadata"].(map[string]any)
		if md["auto_scan"] != autoScan || md["public"] != "false" {
			t.Errorf("project %s: metadata %v, want auto_scan %v and private", name, md, autoScan)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("dev harbor: %v", err)
	}

	printed, _, stop = startDevHarbor(t, args...)
	if want := "project wso2-dev: exists, kept as it is|project wso2-prod: exists, kept as it is"; strings.Join(printed, "|") != want {
		t.Errorf("after a restart printed %q, want %q", printed, want)
	}
	if err := stop(); err != nil {
		t.Errorf("dev harbor: %v", err)
	}
}

func TestDevHarborBadProject(t *testing.T) {
	for _, v := range []string{"wso2-dev:scan", ":auto_scan"} {
		cmd := harborflow.NewCommand()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"dev", "harbor", "--listen", "127.0.0.1:0", "--project", v})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "want NAME or NAME:auto_scan") {
			t.Errorf("--project %s: %v", v, err)
		}
	}
}
