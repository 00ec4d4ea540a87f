//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"

	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// TestE2ERebuild pushes one base image to the registry and follows it through the pipeline: the registry's
// notification, the inspection, the overlay rebuild into acme/am and the inspection of the rebuilt image.
func TestE2ERebuild(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base, err := e.reg.pushBase(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	const wantTag = "4.2.0.1.1"
	var images []image
	waitFor(t, time.Minute, 250*time.Millisecond, "acme/am:"+wantTag+" in the registry", func() (bool, string) {
		images, err = e.reg.targetImages(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(images) > 0, fmt.Sprint(images)
	})
	if len(images) != 1 || images[0].Tag != wantTag || images[0].Level != 1 || images[0].Build != 1 {
		t.Fatalf("acme/am has %v; want one tag %s with update_level=1 and io.harborflow.build=1", images, wantTag)
	}
	rebuilt := images[0]
	e.checkOverlay(ctx, rebuilt)

	// The rebuilder's own pushes come back as notifications: wait until the tag's has been stored and the
	// stages have handled everything.
	waitFor(t, time.Minute, 500*time.Millisecond, "harborflow to handle the notifications of the rebuilt image", func() (bool, string) {
		pushes, err := e.hf.events(ctx, "registry.*.push")
		if err != nil {
			return false, err.Error()
		}
		seen := false
		for _, l := range pushes {
			ev := &harborflowv1.RegistryEvent{}
			if err := l.decode(ev); err == nil && ev.GetRepository() == targetRepo && ev.GetTag() == wantTag {
				seen = true
			}
		}
		if !seen {
			return false, fmt.Sprintf("no push of %s:%s among %d push events", targetRepo, wantTag, len(pushes))
		}
		ok, state, err := e.hf.settled(ctx)
		if err != nil {
			return false, err.Error()
		}
		return ok, state
	})

	rebuilts := e.rebuiltEvents(ctx)
	if len(rebuilts) != 1 {
		t.Errorf("%d image.rebuilt, want 1: %v", len(rebuilts), rebuilts)
	} else if rb := rebuilts[0]; rb.GetRecipe() != recipeName || rb.GetTag() != wantTag || rb.GetUpdateLevel() != 1 ||
		rb.GetBaseDigest() != base || rb.GetDigest() != rebuilt.Digest {
		t.Errorf("image.rebuilt %v; want recipe %s, tag %s, update level 1, base %s, digest %s", rb, recipeName, wantTag, base, rebuilt.Digest)
	}

	inspected, err := e.hf.events(ctx, event.SubjectImageInspected)
	if err != nil {
		t.Fatal(err)
	}
	var ofBase, ofTarget []string
	for _, l := range inspected {
		ii := &harborflowv1.ImageInspected{}
		if err := l.decode(ii); err != nil {
			t.Fatal(err)
		}
		desc := fmt.Sprintf("#%d %s@%s tags %v level %d", l.Sequence, ii.GetRepository(), ii.GetDigest(), ii.GetTags(), ii.GetUpdateLevel())
		switch {
		case ii.GetRepository() == baseRepo && ii.GetDigest() == base:
			ofBase = append(ofBase, desc)
			if ii.GetUpdateLevel() != 1 || ii.GetVersion() != "4.2.0" {
				t.Errorf("image.inspected of the base: %s, version %q; want update level 1, version 4.2.0", desc, ii.GetVersion())
			}
		case ii.GetRepository() == targetRepo && ii.GetDigest() == rebuilt.Digest:
			ofTarget = append(ofTarget, desc)
		}
	}
	if len(ofBase) != 1 {
		t.Errorf("%d image.inspected of the base %s, want 1: %v", len(ofBase), base, ofBase)
	}
	// One image, one inspection. The rebuilder pushes by digest, then by tag; each push is a notification, and
	// the inspector publishes image.inspected for both (known, being fixed elsewhere).
	if len(ofTarget) != 1 {
		t.Errorf("%d image.inspected of the rebuilt image %s, want exactly 1:\n  %s", len(ofTarget), rebuilt.Digest,
			strings.Join(ofTarget, "\n  "))
	}
	e.checkNoDeadLetters(ctx)
}

// rebuiltEvents are the image.rebuilt messages stored.
func (e *env) rebuiltEvents(ctx context.Context) []*harborflowv1.ImageRebuilt {
	e.t.Helper()
	lines, err := e.hf.events(ctx, event.SubjectImageRebuilt)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]*harborflowv1.ImageRebuilt, 0, len(lines))
	for _, l := range lines {
		rb := &harborflowv1.ImageRebuilt{}
		if err := l.decode(rb); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, rb)
	}
	return out
}

// checkNoDeadLetters fails the test with every dead letter's stage and reason, verbatim.
func (e *env) checkNoDeadLetters(ctx context.Context) {
	e.t.Helper()
	dead, err := e.hf.events(ctx, "dlq.>")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range dead {
		e.t.Errorf("dead letter #%d on %s after %s deliveries, from %s #%s: %s", l.Sequence, l.Subject,
			l.header(event.HeaderDLQDeliveries), l.header(event.HeaderDLQStream), l.header(event.HeaderDLQSequence),
			l.header(event.HeaderDLQReason))
	}
}

// checkOverlay checks that the rebuilt image is the base with the recipe's context on top: one more layer
// whose files are the context's, owned by 802:802.
func (e *env) checkOverlay(ctx context.Context, img image) {
	e.t.Helper()
	repo, err := e.reg.ref(targetRepo)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := e.reg.rc.ManifestGet(ctx, repo.SetDigest(img.Digest))
	if err != nil {
		e.t.Fatalf("reading %s: %v", img, err)
	}
	mi, ok := m.(manifest.Imager)
	if !ok {
		e.t.Fatalf("%s is a %s, want an image manifest", img, m.GetDescriptor().MediaType)
	}
	layers, err := mi.GetLayers()
	if err != nil || len(layers) != 3 {
		e.t.Fatalf("%s has layers %v (%v); want the base's two and the overlay", img, layers, err)
	}
	files, err := e.reg.layerFiles(ctx, layers[2])
	if err != nil {
		e.t.Fatal(err)
	}
	want := []string{
		"home/wso2carbon/wso2am-4.2.0/repository/components/lib/acme-jdbc.jar 802:802",
		"home/wso2carbon/wso2am-4.2.0/repository/conf/acme.toml 802:802",
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		e.t.Errorf("the overlay layer of %s holds %q, want %q", img, files, want)
	}
}

// layerFiles lists the entries of a gzip tar layer of acme/am as "path uid:gid".
func (d *distribution) layerFiles(ctx context.Context, layer descriptor.Descriptor) ([]string, error) {
	repo, err := d.ref(targetRepo)
	if err != nil {
		return nil, err
	}
	rd, err := d.rc.BlobGet(ctx, repo, layer)
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", layer.Digest, err)
	}
	defer rd.Close()
	gz, err := gzip.NewReader(rd)
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", layer.Digest, err)
	}
	tr := tar.NewReader(gz)
	var out []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", layer.Digest, err)
		}
		out = append(out, fmt.Sprintf("%s %d:%d", hdr.Name, hdr.Uid, hdr.Gid))
	}
}
