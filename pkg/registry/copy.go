package registry

import (
	"context"
	"fmt"

	"github.com/regclient/regclient"
)

// CopyOpt says what Copy carries besides the image.
type CopyOpt func(*copyOpts)

type copyOpts struct {
	referrers bool
}

// WithReferrers makes Copy carry what refers to the image as well: OCI referrers (a subject naming the image
// or one of its platforms: signatures, attestations, SBOMs) and the tags of cosign's tag scheme
// (sha256-<hex>.sig, .att, .sbom), each written by digest or under its digest tag.
func WithReferrers() CopyOpt { return func(o *copyOpts) { o.referrers = true } }

// Copy copies the image src (registry/repository@digest) into the repository dst (registry/repository) by
// digest: its manifests, its blobs (mounted when both are on one registry, nothing downloaded) and, with
// WithReferrers, its referrers. No tag is written but the digest tags of cosign's scheme, so the caller names
// the copy afterwards (Tag). What dst already has is not written again; with WithReferrers the referrers are
// still looked for, so a copy cut short is finished by calling Copy again.
func (c *Client) Copy(ctx context.Context, src, dst string, opts ...CopyOpt) error {
	var o copyOpts
	for _, opt := range opts {
		opt(&o)
	}
	from, err := pinnedRef(src)
	if err != nil {
		return opError("copying", src, err)
	}
	to, err := targetRef(dst)
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	to = to.SetDigest(from.Digest)
	var ic []regclient.ImageOpts
	if o.referrers {
		ic = append(ic, regclient.ImageWithReferrers(), regclient.ImageWithDigestTags())
	}
	if err := c.rc.ImageCopy(ctx, from, to, ic...); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, mapErr(err))
	}
	return nil
}
