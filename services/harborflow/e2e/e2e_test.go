//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// TestE2ERebuild pushes one base image to the registry and follows it through the pipeline: the registry's
// notification, the inspection, the overlay rebuild into acme/am, the inspection of the rebuilt image and its
// promotion into acme-staging/am.
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
	var ofBase, ofTarget, targetTags []string
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
			targetTags = append(targetTags, strings.Join(ii.GetTags(), ","))
		}
	}
	if len(ofBase) != 1 {
		t.Errorf("%d image.inspected of the base %s, want 1: %v", len(ofBase), base, ofBase)
	}
	// One inspection per tag: the rebuilder pushes by digest, then by tag, and each push is a notification; the
	// untagged one waits for its tag. The promoter then moves the rolling tags 4.2.0 and latest in acme/am, the
	// chain's first stage, and each of those pushes is inspected once more with every tag seen so far.
	want := []string{wantTag, wantTag + ",4.2.0", wantTag + ",4.2.0,latest"}
	if !slices.Equal(targetTags, want) {
		t.Errorf("image.inspected of the rebuilt image %s with tags %q, want %q:\n  %s", rebuilt.Digest, targetTags, want,
			strings.Join(ofTarget, "\n  "))
	}
	e.checkPromoted(ctx, []image{rebuilt})
	e.checkNoDeadLetters(ctx)

	// What a user runs on the promoted image: cosign accepts its signature and its provenance.
	staged := e.reg.Host + "/" + stagingRepo + "@" + rebuilt.Digest
	offline := []string{"--key", keyFile(t, "cosign.pub"), "--offline=true", "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"}
	if out, err := buildahtest.Cosign(t, nil, append(append([]string{"verify"}, offline...), staged)...); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	if out, err := buildahtest.Cosign(t, nil, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, offline...), staged)...); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

// checkPromoted checks that every image of acme/am was promoted once into acme-staging/am, under its own tag,
// signed and attested in both, and that the rolling tags 4.2.0 and latest are on the newest, in both stages.
func (e *env) checkPromoted(ctx context.Context, images []image) {
	e.t.Helper()
	e.checkSigned(ctx, images)
	staged, err := e.reg.tags(ctx, stagingRepo)
	if err != nil {
		e.t.Fatal(err)
	}
	first, err := e.reg.tags(ctx, targetRepo)
	if err != nil {
		e.t.Fatal(err)
	}
	var newest image
	for _, img := range images {
		if staged[img.Tag] != img.Digest {
			e.t.Errorf("%s:%s is %q, want %s (as %s:%s)", stagingRepo, img.Tag, staged[img.Tag], img.Digest, targetRepo, img.Tag)
		}
		if img.Level > newest.Level {
			newest = img
		}
	}
	for _, rolling := range []string{"4.2.0", "latest"} {
		if staged[rolling] != newest.Digest {
			e.t.Errorf("%s:%s is %q, want the newest, %s (%s)", stagingRepo, rolling, staged[rolling], newest.Tag, newest.Digest)
		}
		if first[rolling] != newest.Digest {
			e.t.Errorf("%s:%s is %q, want the newest, %s (%s)", targetRepo, rolling, first[rolling], newest.Tag, newest.Digest)
		}
	}
	if len(staged) != len(images)+2 {
		e.t.Errorf("%s has tags %v, want the %d of %s and two rolling tags", stagingRepo, staged, len(images), targetRepo)
	}
	lines, err := e.hf.events(ctx, event.SubjectImagePromoted)
	if err != nil {
		e.t.Fatal(err)
	}
	promoted := map[string]int{}
	for _, l := range lines {
		m := &harborflowv1.ImagePromoted{}
		if err := l.decode(m); err != nil {
			e.t.Fatal(err)
		}
		if m.GetChain() != chainName || m.GetToStage() == "" {
			e.t.Errorf("image.promoted %v", m)
		}
		promoted[m.GetDigest()]++
	}
	for _, img := range images {
		if promoted[img.Digest] != 1 {
			e.t.Errorf("%s (%s) promoted %d times, want once", img.Tag, img.Digest, promoted[img.Digest])
		}
	}
	if len(promoted) != len(images) {
		e.t.Errorf("%d images promoted, want %d", len(promoted), len(images))
	}
	blocked, err := e.hf.events(ctx, event.SubjectImageBlocked)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(blocked) != 0 {
		e.t.Errorf("%d image.blocked, want none", len(blocked))
	}
}

// TestE2EChaos pushes 30 update levels while harborflow is SIGKILLed and restarted every 1–3 s, then lets it
// settle and checks that the pipeline ends where an uninterrupted one would: nothing dead-lettered, the newest
// level built, no level built twice, and no older level finished after a newer one — neither by build number
// nor in the order image.rebuilt was published — and every image built promoted once into acme-staging/am,
// with 4.2.0 and latest on the newest. Levels skipped because a newer one was built first are fine.
func TestE2EChaos(t *testing.T) {
	const (
		levels   = 30
		interval = 700 * time.Millisecond
		// A delivery killed mid-build is redelivered after the consumer's AckWait (30 s by default), and the
		// registry retries refused notifications every second: most runs settle within a minute of the last
		// kill; a delivery retried with the back-off takes longer.
		settleTimeout = 150 * time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("E2E_SEED %q: %v", s, err)
		}
	}
	t.Logf("kill schedule seed %d (E2E_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	chaosCtx, stopChaos := context.WithCancel(ctx)
	chaosDone := make(chan error, 1)
	kills := 0
	go func() {
		chaosDone <- func() error {
			for {
				wait := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
				select {
				case <-chaosCtx.Done():
					return nil
				case <-time.After(wait):
				}
				if err := e.hf.kill(); err != nil {
					return err
				}
				kills++
				t.Logf("+%5.1fs SIGKILL %d (after %s), restarting", time.Since(start).Seconds(), kills, wait.Round(time.Millisecond))
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := e.hf.start(rctx)
				cancel()
				if err != nil {
					return err
				}
			}
		}()
	}()

	tick := time.NewTicker(interval)
	var pushErr error
	for level := 1; level <= levels && pushErr == nil; level++ {
		_, pushErr = e.reg.pushBase(ctx, level)
		if level < levels {
			<-tick.C
		}
	}
	tick.Stop()
	stopChaos()
	if err := <-chaosDone; err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if pushErr != nil {
		t.Fatalf("pushing the bases: %v", pushErr)
	}
	t.Logf("+%5.1fs pushed %d levels, %d kills; waiting for harborflow to settle", time.Since(start).Seconds(), levels, kills)

	var images []image
	waitFor(t, settleTimeout, time.Second, fmt.Sprintf("level %d built and the pipeline settled", levels), func() (bool, string) {
		var err error
		if images, err = e.reg.targetImages(ctx); err != nil {
			return false, err.Error()
		}
		newest := int64(0)
		for _, img := range images {
			newest = max(newest, img.Level)
		}
		ok, state, err := e.hf.settled(ctx)
		if err != nil {
			return false, err.Error()
		}
		staged, err := e.reg.tags(ctx, stagingRepo)
		if err != nil {
			return false, err.Error()
		}
		promoted := 0
		for _, img := range images {
			if staged[img.Tag] == img.Digest {
				promoted++
			}
		}
		return ok && newest == levels && promoted == len(images),
			fmt.Sprintf("newest level built %d; %d of %d promoted; %s", newest, promoted, len(images), state)
	})
	t.Logf("+%5.1fs settled; acme/am: %v", time.Since(start).Seconds(), images)

	e.checkNoDeadLetters(ctx)
	e.checkPromoted(ctx, images)
	byLevel := map[int64][]string{}
	for _, img := range images {
		byLevel[img.Level] = append(byLevel[img.Level], img.Tag)
	}
	for level, tags := range byLevel {
		if len(tags) > 1 {
			t.Errorf("update level %d was built %d times: %v", level, len(tags), tags)
		}
	}
	if len(byLevel[levels]) == 0 {
		t.Errorf("the newest update level, %d, was not built: %v", levels, images)
	}
	for i := 1; i < len(images); i++ {
		if prev, cur := images[i-1], images[i]; cur.Level <= prev.Level {
			t.Errorf("build %d has update level %d, not newer than build %d's %d: an older level finished after a newer one (%s after %s)",
				cur.Build, cur.Level, prev.Build, prev.Level, cur.Tag, prev.Tag)
		}
	}
	// image.rebuilt is published when a build has been tagged: its order in the stream is the order builds
	// finished in, which a build number taken before a crash does not show.
	rebuilts := e.rebuiltEvents(ctx)
	if len(rebuilts) != len(images) {
		t.Errorf("%d image.rebuilt for %d tags of acme/am", len(rebuilts), len(images))
	}
	var newest *harborflowv1.ImageRebuilt
	for _, rb := range rebuilts {
		if newest != nil && rb.GetUpdateLevel() <= newest.GetUpdateLevel() {
			t.Errorf("update level %d (%s) finished after update level %d (%s)", rb.GetUpdateLevel(), rb.GetTag(),
				newest.GetUpdateLevel(), newest.GetTag())
		}
		if newest == nil || rb.GetUpdateLevel() > newest.GetUpdateLevel() {
			newest = rb
		}
	}
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

// checkSigned checks that every image, in acme/am and in acme-staging/am, has one signature, which verifies
// with harborflow's key, and one provenance attestation, which verifies and says the image was built on a base
// of wso2-apim/am: however often harborflow was killed, nothing was signed twice.
func (e *env) checkSigned(ctx context.Context, images []image) {
	e.t.Helper()
	c, err := registry.New([]registry.Host{{Name: e.reg.Host, PlainHTTP: true}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	pub, err := os.ReadFile(keyFile(e.t, "cosign.pub"))
	if err != nil {
		e.t.Fatal(err)
	}
	keys, err := signature.LoadVerifiers(pub)
	if err != nil {
		e.t.Fatal(err)
	}
	layers := func(ref string) int {
		_, body, err := c.ManifestBody(ctx, ref)
		if err != nil {
			e.t.Errorf("reading %s: %v", ref, err)
			return 0
		}
		var m struct{ Layers []json.RawMessage }
		if err := json.Unmarshal(body, &m); err != nil {
			e.t.Errorf("decoding %s: %v", ref, err)
		}
		return len(m.Layers)
	}
	for _, repo := range []string{targetRepo, stagingRepo} {
		for _, img := range images {
			ref := e.reg.Host + "/" + repo + "@" + img.Digest
			if err := signature.Verify(ctx, c, ref, keys); err != nil {
				e.t.Errorf("%s: %v", img.Tag, err)
			}
			st, err := signature.VerifyAttestation(ctx, c, ref, keys, provenance.PredicateType)
			if err != nil {
				e.t.Errorf("%s: %v", img.Tag, err)
				continue
			}
			if b, err := provenance.Parse(st); err != nil || b.Digest != img.Digest || !strings.HasPrefix(b.BaseImage, e.reg.Host+"/"+baseRepo+"@") {
				e.t.Errorf("%s in %s: provenance %+v (%v), want its digest built on %s", img.Tag, repo, b, err, baseRepo)
			}
			tag := e.reg.Host + "/" + repo + ":" + strings.Replace(img.Digest, ":", "-", 1)
			if sigs, atts := layers(tag+".sig"), layers(tag+".att"); sigs != 1 || atts != 1 {
				e.t.Errorf("%s in %s: %d signatures and %d attestations, want one each", img.Tag, repo, sigs, atts)
			}
		}
	}
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
// whose files are the context's, owned by 802:802, with their parent directories as the base has them (so
// that overlayfs-based runtimes keep them) or, where the base has none, owned by 802:802 with mode 0755.
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
		"home/ 0:0 755",
		"home/wso2carbon/ 802:802 750",
		"home/wso2carbon/wso2am-4.2.0/ 802:802 755",
		"home/wso2carbon/wso2am-4.2.0/repository/ 802:802 755",
		"home/wso2carbon/wso2am-4.2.0/repository/components/ 802:802 755",
		"home/wso2carbon/wso2am-4.2.0/repository/components/lib/ 802:802 755",
		"home/wso2carbon/wso2am-4.2.0/repository/components/lib/acme-jdbc.jar 802:802 644",
		"home/wso2carbon/wso2am-4.2.0/repository/conf/ 802:802 755",
		"home/wso2carbon/wso2am-4.2.0/repository/conf/acme.toml 802:802 644",
	}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		e.t.Errorf("the overlay layer of %s holds %q, want %q", img, files, want)
	}
}

// layerFiles lists the entries of a gzip tar layer of acme/am as "path uid:gid mode".
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
		out = append(out, fmt.Sprintf("%s %d:%d %o", hdr.Name, hdr.Uid, hdr.Gid, hdr.Mode))
	}
}
