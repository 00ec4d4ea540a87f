package rebuilder_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/rebuilder"
)

// BenchmarkSigning measures what signing and attesting add to a rebuild (issue 13: ≤ 20 % of an overlay build of
// a two-platform image): every op pushes a new update level of a two-platform WSO2-shaped base (an 8 MB OS layer
// the same in every level, a 16 MB product layer new in each), and two rebuilders build it with the overlay
// builder into repositories of their own, one signing (the index and both platform manifests) and attesting the
// index's provenance (which digests the context and reads the base's index), and one not, taking turns in going
// first. Reported: unsigned-ns/op, signed-ns/op and overhead (signed/unsigned - 1).
func BenchmarkSigning(b *testing.B) {
	ctx := context.Background()
	reg := registrytest.New(b)
	client, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		b.Fatal(err)
	}
	srv := bustest.Start(b)
	kv, err := srv.Bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	p := filepath.Join(dir, "home/wso2carbon/wso2am-4.2.0/repository/components/lib/mysql-connector.jar")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("acme driver"), 0o640); err != nil {
		b.Fatal(err)
	}
	newRebuilder := func(name string, s rebuilder.Signer) *rebuilder.Rebuilder {
		rc := config.Rebuild{Name: name, Base: reg.Ref("wso2/am:4.2.0"), Builder: config.BuilderOverlay, Context: dir,
			Owner: "802:802", Target: reg.Ref("bench/" + name), Tag: imagetag.DefaultTemplate, Timeout: 5 * time.Minute}
		// No layer-tree cache: the second of two builds of one base would find the trees the first recorded,
		// and the comparison would measure the cache, not the signing.
		rb, err := rebuilder.New([]config.Rebuild{rc}, "update_level", rebuilder.Deps{Registry: client, State: kv,
			Signer: s, Holder: name})
		if err != nil {
			b.Fatal(err)
		}
		return rb
	}
	unsigned, signed := newRebuilder("unsigned", nil), newRebuilder("signed", newSigner(b, client))
	var tookUnsigned, tookSigned time.Duration
	handle := func(rb *rebuilder.Rebuilder, m *bus.Message) time.Duration {
		start := time.Now()
		out, err := rb.Handle(ctx, m)
		if err != nil || len(out) != 1 {
			b.Fatalf("rebuild: %v %v", out, err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		level := int64(100 + i)
		tag := "4.2.0." + strconv.FormatInt(level, 10)
		var imgs []registrytest.Image
		for _, pl := range []string{"linux/amd64", "linux/arm64"} {
			imgs = append(imgs, registrytest.Image{Platform: pl, User: "802", Labels: map[string]string{"update_level": strconv.FormatInt(level, 10)},
				Entries: [][]registrytest.Entry{
					{registrytest.RandomFile("usr/lib/os.bin", 8<<20, uint64(len(pl)), 0o644, 0, 0)},
					{registrytest.RandomFile("home/wso2carbon/wso2am-4.2.0/lib/product.jar", 16<<20, uint64(level)*7+uint64(len(pl)), 0o644, 802, 802)},
				}})
		}
		pushed := reg.PushIndex(b, "wso2/am:"+tag, registrytest.Index{Images: imgs})
		mediaType, body := reg.ReadManifest(b, "wso2/am:"+tag)
		reg.PushRaw(b, "wso2/am:4.2.0", mediaType, body)
		ev := &harborflowv1.ImageInspected{Registry: reg.Host, Repository: "wso2/am", Digest: pushed.Digest, Tags: []string{tag},
			MediaType: pushed.MediaType, Version: "4.2.0", UpdateLevel: &level}
		m, err := bus.NewMessage(event.SubjectImageInspected, strings.ReplaceAll(tag, ".", "-"), "", ev)
		if err != nil {
			b.Fatal(err)
		}
		m.Stream, m.Sequence, m.Deliveries = event.StreamImage, uint64(i+1), 1
		b.StartTimer()
		if i%2 == 0 {
			tookUnsigned += handle(unsigned, m)
			tookSigned += handle(signed, m)
		} else {
			tookSigned += handle(signed, m)
			tookUnsigned += handle(unsigned, m)
		}
	}
	b.ReportMetric(float64(tookUnsigned.Nanoseconds())/float64(b.N), "unsigned-ns/op")
	b.ReportMetric(float64(tookSigned.Nanoseconds())/float64(b.N), "signed-ns/op")
	b.ReportMetric(float64(tookSigned)/float64(tookUnsigned)-1, "overhead")
}
