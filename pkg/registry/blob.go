package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
)

// Blob reads the blob dig (sha256:<hex>) of repository (registry/repository), verified against its digest,
// refusing one larger than limit bytes. The error is ErrNotFound when the repository does not have it.
func (c *Client) Blob(ctx context.Context, repository, dig string, limit int64) ([]byte, error) {
	r, err := targetRef(repository)
	if err != nil {
		return nil, opError("reading blob "+dig+" of", repository, err)
	}
	d, err := digest.Parse(dig)
	if err != nil {
		return nil, fmt.Errorf("reading blob of %s: %w: digest %q", repository, ErrInvalidReference, dig)
	}
	if body, ok, err := c.direct.blob(ctx, r, descJSON{Digest: dig}, limit); ok {
		return body, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading blob %s of %s: %w", dig, repository, mapErr(err))
	}
	rd, err := c.rc.BlobGet(ctx, r, descriptor.Descriptor{Digest: d})
	if err != nil {
		return nil, fmt.Errorf("reading blob %s of %s: %w", dig, repository, mapErr(err))
	}
	defer rd.Close()
	// Reading to the end verifies the digest.
	var body bytes.Buffer
	n, err := body.ReadFrom(io.LimitReader(rd, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading blob %s of %s: %w", dig, repository, mapErr(err))
	case n > limit:
		return nil, fmt.Errorf("reading blob %s of %s: larger than %d bytes", dig, repository, limit)
	}
	return body.Bytes(), nil
}

// PutBlob uploads content into repository (registry/repository), unless the repository has it already, and
// returns its descriptor with mediaType: what a manifest written with PutManifest names.
func (c *Client) PutBlob(ctx context.Context, repository, mediaType string, content []byte) (Descriptor, error) {
	r, err := targetRef(repository)
	if err != nil {
		return Descriptor{}, opError("putting a blob into", repository, err)
	}
	d := descriptor.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(content), Size: int64(len(content))}
	out := Descriptor{Digest: d.Digest.String(), MediaType: mediaType, Size: d.Size}
	if rd, err := c.rc.BlobHead(ctx, r, d); err == nil {
		_ = rd.Close()
		return out, nil
	} else if err = mapErr(err); !errors.Is(err, ErrNotFound) {
		return Descriptor{}, fmt.Errorf("putting blob %s into %s: %w", d.Digest, repository, err)
	}
	if _, err := c.rc.BlobPut(ctx, r, d, bytes.NewReader(content)); err != nil {
		return Descriptor{}, fmt.Errorf("putting blob %s into %s: %w", d.Digest, repository, mapErr(err))
	}
	return out, nil
}
