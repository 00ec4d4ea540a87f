package event

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets: state that must survive restarts.
const (
	// BucketImageHistory holds an ImageRecord per digest: which update level went into which digest.
	BucketImageHistory = "image-history"
	// BucketIndexChildren holds an IndexChild per platform manifest of an inspected index.
	BucketIndexChildren = "index-children"
	// BucketWatcher holds a WatchBaseline per tracked tag of a poll source.
	BucketWatcher = "watcher-baselines"
	// BucketRebuilds holds the rebuilder's state: a Build per recipe and base digest, a RecipeState per recipe,
	// and a build-number counter per recipe and version.
	BucketRebuilds = "rebuilds"
	// BucketLayerTrees holds, per layer digest, the directories, links and whiteouts of a base image layer, so
	// that the overlay builder reads each base layer once. Entries can always be read again from the layer:
	// unused ones expire.
	BucketLayerTrees = "layer-trees"
	// BucketPromotions holds a PromotionState per promotion chain and digest: the stages an image reached, the
	// last evaluation of its next stage's gates, its approvals.
	BucketPromotions = "promotions"
	// BucketScans holds the newest ScanResult per registry and digest, from registry.*.scan events: what the
	// promoter's max_severity gate reads for every platform of an image.
	BucketScans = "scans"
	// BucketRetention holds a Deletion per artifact retention deleted (or is deleting): what, why, when, and
	// the manifests to put it back with.
	BucketRetention = "retention"
)

// indexChildTTL is how long a child → index record is kept: long enough for every webhook of a push (they
// arrive within seconds) and its redeliveries.
const indexChildTTL = 7 * 24 * time.Hour

// layerTreeTTL is how long a layer's tree is kept since it was read: past a few update levels, a base's layers
// are not used again.
const layerTreeTTL = 90 * 24 * time.Hour

// KeyValues returns the definitions of the KV buckets, with the streams' replicas.
func KeyValues(o StreamOptions) []jetstream.KeyValueConfig {
	def := func(name, desc string, ttl time.Duration) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{
			Bucket:      name,
			Description: desc,
			Storage:     jetstream.FileStorage,
			Replicas:    max(o.Replicas, 1),
			TTL:         ttl,
			History:     1,
		}
	}
	return []jetstream.KeyValueConfig{
		def(BucketImageHistory, "inspector: digest → ImageRecord", 0),
		def(BucketIndexChildren, "inspector: platform manifest → its index", indexChildTTL),
		def(BucketWatcher, "watcher: tracked tag → WatchBaseline", 0),
		def(BucketRebuilds, "rebuilder: builds, recipe lines, build-number counters", 0),
		def(BucketLayerTrees, "rebuilder: base layer digest → its directories and links", layerTreeTTL),
		def(BucketPromotions, "promoter: chain and digest → PromotionState", 0),
		def(BucketScans, "promoter: registry and digest → newest ScanResult", 0),
		def(BucketRetention, "retention: registry, repository and digest → Deletion", 0),
	}
}

// Key joins parts into a KV key, one token each. Characters a key may not hold (':' of a digest or a port, '.'
// that would split a token, anything outside [-/_a-zA-Z0-9]) are escaped as =XX, so every distinct part list
// gives a distinct key and a part can be matched with a * wildcard.
func Key(parts ...string) string {
	tokens := make([]string, len(parts))
	for i, p := range parts {
		tokens[i] = keyToken(p)
	}
	return strings.Join(tokens, ".")
}

func keyToken(s string) string {
	if s == "" {
		return "="
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '/' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&0xf])
	}
	return b.String()
}
