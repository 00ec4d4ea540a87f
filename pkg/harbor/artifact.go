package harbor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/go-openapi/swag"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/artifact"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/scan"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
)

// Artifact is an artifact of a repository as Harbor lists it: an image, an index, or an accessory.
type Artifact struct {
	ID           int64
	ProjectID    int64
	RepositoryID int64
	// Repository is the full name, project/repository.
	Repository string
	Digest     string
	// Type is Harbor's kind (IMAGE, also for an index: HARBOR.md §7); MediaType is the config's media type,
	// ManifestMediaType the manifest's.
	Type              string
	MediaType         string
	ManifestMediaType string
	ArtifactType      string
	Size              int64
	PushTime          time.Time
	PullTime          time.Time
	// Tags, newest first as Harbor lists them (empty without tags). Tag.Immutable is filled only with
	// WithImmutableStatus (HARBOR.md §7.1).
	Tags []Tag
	// Labels are Harbor labels (WithLabels), not image labels.
	Labels []Label
	// ScanOverview is the scan summary by report MIME type (WithScanOverview); nil when never scanned. An
	// index's is merged from its children's and must not gate anything (HARBOR.md §7.1).
	ScanOverview map[string]ScanSummary
	// Accessories are the signatures and other accessories attached to it (WithAccessories).
	Accessories []Accessory
	// References are an index's children.
	References  []Reference
	Annotations map[string]string
	// ConfigLabels are the image config's labels of a single-platform image (extra_attrs.config.Labels,
	// HARBOR.md §3.2); nil for an index.
	ConfigLabels map[string]string
}

// TagNames are the names of the artifact's tags, newest first.
func (a Artifact) TagNames() []string {
	out := make([]string, len(a.Tags))
	for i, t := range a.Tags {
		out[i] = t.Name
	}
	return out
}

// Tag is a tag of an artifact.
type Tag struct {
	ID        int64
	Name      string
	Immutable bool
	PushTime  time.Time
	PullTime  time.Time
}

// Reference is a child of an index.
type Reference struct {
	Digest       string
	OS           string
	Architecture string
	Variant      string
	Annotations  map[string]string
}

// ScanSummary is one report's summary in scan_overview (HARBOR.md §7.1).
type ScanSummary struct {
	ReportID string
	// Status is Success, Running, Error, Stopped, Pending …
	Status string
	// Severity is the highest found (None, Low, Medium, High, Critical); "" after an error.
	Severity        string
	StartTime       time.Time
	EndTime         time.Time
	Duration        time.Duration
	CompletePercent int64
	// Total and Fixable count vulnerabilities; BySeverity counts them per severity.
	Total, Fixable int64
	BySeverity     map[string]int64
	Scanner        Scanner
}

// Scanner names the scanner of a report.
type Scanner struct {
	Name, Vendor, Version string
}

// Accessory is an artifact attached to another (a cosign signature: Type signature.cosign).
type Accessory struct {
	ID                    int64
	ArtifactID            int64
	Digest                string
	Type                  string
	Size                  int64
	SubjectArtifactID     int64
	SubjectArtifactDigest string
	SubjectArtifactRepo   string
	CreationTime          time.Time
}

// ArtifactOpt says what a listing or read of artifacts includes.
type ArtifactOpt func(*artifactQuery)

type artifactQuery struct {
	withoutTag, label, scan, accessory, immutable bool
	q, sort                                       string
}

// WithoutTags leaves the tags out (Harbor includes them by default).
func WithoutTags() ArtifactOpt { return func(o *artifactQuery) { o.withoutTag = true } }

// WithLabels includes the Harbor labels (with_label).
func WithLabels() ArtifactOpt { return func(o *artifactQuery) { o.label = true } }

// WithScanOverview includes the scan summaries (with_scan_overview).
func WithScanOverview() ArtifactOpt { return func(o *artifactQuery) { o.scan = true } }

// WithAccessories includes the accessories (with_accessory).
func WithAccessories() ArtifactOpt { return func(o *artifactQuery) { o.accessory = true } }

// WithImmutableStatus fills Tag.Immutable (with_immutable_status).
func WithImmutableStatus() ArtifactOpt { return func(o *artifactQuery) { o.immutable = true } }

// WithQuery filters a listing with Harbor's q= syntax (HARBOR.md §3.1): "tags=*" for tagged artifacts,
// "tags=nil" for untagged ones, "digest=sha256:…", "labels=(1 2)", "push_time=[… ~ …]".
func WithQuery(q string) ArtifactOpt { return func(o *artifactQuery) { o.q = q } }

// WithSort orders a listing ("-push_time", "name"); Harbor's own order otherwise.
func WithSort(s string) ArtifactOpt { return func(o *artifactQuery) { o.sort = s } }

func artifactQueryOf(opts []ArtifactOpt) artifactQuery {
	var q artifactQuery
	for _, o := range opts {
		o(&q)
	}
	return q
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Artifacts lists every top-level artifact of project/repo (index children are not listed, and neither
// are accessories; HARBOR.md §7). A project or repository that does not exist lists as empty, as Harbor
// answers it (§7).
func (c *Client) Artifacts(ctx context.Context, projectName, repo string, opts ...ArtifactOpt) ([]Artifact, error) {
	q := artifactQueryOf(opts)
	return list(ctx, c, "listing artifacts of", projectName+"/"+repo, func(ctx context.Context, page, size int64) ([]Artifact, int64, error) {
		params := &artifact.ListArtifactsParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Page: &page, PageSize: &size,
			Q: optString(q.q), Sort: optString(q.sort),
			WithTag: swag.Bool(!q.withoutTag), WithLabel: swag.Bool(q.label), WithScanOverview: swag.Bool(q.scan),
			WithAccessory: swag.Bool(q.accessory), WithImmutableStatus: swag.Bool(q.immutable),
			Context: ctx,
		}
		// artifact.Client.ListArtifacts with the body read by listArtifactsReader (wire.go).
		res, err := c.api.Transport.Submit(&runtime.ClientOperation{
			ID: "listArtifacts", Method: "GET", PathPattern: "/projects/{project_name}/repositories/{repository_name}/artifacts",
			ProducesMediaTypes: []string{"application/json"}, ConsumesMediaTypes: []string{"application/json"},
			Schemes: []string{"http", "https"}, Params: params, Reader: listArtifactsReader{}, Context: ctx,
			AuthInfo: c.auth,
		})
		if err != nil {
			return nil, 0, err
		}
		p := res.(*artifactsPage)
		out := make([]Artifact, len(p.items))
		for i := range p.items {
			out[i] = p.items[i].artifact()
		}
		return out, p.total, nil
	})
}

// Artifact reads one artifact of project/repo by reference, a tag or a digest. An index's children can be
// read by their digests.
func (c *Client) Artifact(ctx context.Context, projectName, repo, reference string, opts ...ArtifactOpt) (*Artifact, error) {
	q := artifactQueryOf(opts)
	var a Artifact
	_, err := c.call(ctx, "getting artifact", refString(projectName, repo, reference), func(ctx context.Context) error {
		params := &artifact.GetArtifactParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference,
			WithTag: swag.Bool(!q.withoutTag), WithLabel: swag.Bool(q.label), WithScanOverview: swag.Bool(q.scan),
			WithAccessory: swag.Bool(q.accessory), WithImmutableStatus: swag.Bool(q.immutable),
			Context: ctx,
		}
		// artifact.Client.GetArtifact with the body read by getArtifactReader (wire.go).
		res, err := c.api.Transport.Submit(&runtime.ClientOperation{
			ID: "getArtifact", Method: "GET", PathPattern: "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
			ProducesMediaTypes: []string{"application/json"}, ConsumesMediaTypes: []string{"application/json"},
			Schemes: []string{"http", "https"}, Params: params, Reader: getArtifactReader{}, Context: ctx,
			AuthInfo: c.auth,
		})
		if err == nil {
			a = res.(*wireArtifact).artifact()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// CopyArtifact copies the artifact from names (project/repo:tag or project/repo@sha256:…) into
// project/repo: its children and accessories, and every tag of it, moving a tag that exists unless it is
// immutable (ErrPrecondition). A missing source is ErrBadRequest, a missing destination project
// ErrNotFound (HARBOR.md §3.2, §7).
func (c *Client) CopyArtifact(ctx context.Context, projectName, repo, from string) error {
	op, dst := "copying artifact "+from+" to", projectName+"/"+repo
	if !validFrom(from) {
		return &Error{Op: op, Resource: dst, kind: ErrBadRequest,
			cause: fmt.Errorf("source %q is not project/repository:tag or project/repository@digest", from)}
	}
	_, err := c.call(ctx, op, dst, func(ctx context.Context) error {
		_, err := c.api.Artifact.CopyArtifact(ctx, &artifact.CopyArtifactParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), From: from, Context: ctx})
		return err
	})
	return err
}

func validFrom(from string) bool {
	slash := strings.Index(from, "/")
	if slash <= 0 {
		return false
	}
	rest := from[slash+1:]
	if i := strings.Index(rest, "@"); i > 0 {
		return len(rest) > i+1
	}
	i := strings.LastIndex(rest, ":")
	return i > 0 && len(rest) > i+1 && !strings.Contains(rest[i:], "/")
}

// CreateTag adds tag to the artifact reference names. ErrConflict when the repository has the tag already,
// on this artifact or another: Harbor never moves a tag this way (HARBOR.md §3.2, §7).
func (c *Client) CreateTag(ctx context.Context, projectName, repo, reference, tag string) error {
	_, err := c.call(ctx, "creating tag "+tag+" on", refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Artifact.CreateTag(ctx, &artifact.CreateTagParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference,
			Tag: &models.Tag{Name: tag}, Context: ctx})
		return err
	})
	return err
}

// DeleteTag removes tag from the artifact reference names; the artifact stays. ErrPrecondition when the
// tag is immutable.
func (c *Client) DeleteTag(ctx context.Context, projectName, repo, reference, tag string) error {
	_, err := c.call(ctx, "deleting tag "+tag+" of", refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Artifact.DeleteTag(ctx, &artifact.DeleteTagParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference, TagName: tag, Context: ctx})
		return err
	})
	return err
}

// DeleteArtifact deletes the artifact reference names with all its tags, even when reference is one tag
// of it. ErrPrecondition when one of its tags is immutable.
func (c *Client) DeleteArtifact(ctx context.Context, projectName, repo, reference string) error {
	_, err := c.call(ctx, "deleting artifact", refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Artifact.DeleteArtifact(ctx, &artifact.DeleteArtifactParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference, Context: ctx})
		return err
	})
	return err
}

// AddLabel attaches the Harbor label labelID to an artifact. ErrConflict when it is attached already,
// ErrNotFound for an unknown label.
func (c *Client) AddLabel(ctx context.Context, projectName, repo, reference string, labelID int64) error {
	_, err := c.call(ctx, fmt.Sprintf("adding label %d to", labelID), refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Artifact.AddLabel(ctx, &artifact.AddLabelParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference,
			Label: &models.Label{ID: labelID}, Context: ctx})
		return err
	})
	return err
}

// RemoveLabel detaches the Harbor label labelID from an artifact. ErrNotFound when it is not attached.
func (c *Client) RemoveLabel(ctx context.Context, projectName, repo, reference string, labelID int64) error {
	_, err := c.call(ctx, fmt.Sprintf("removing label %d from", labelID), refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Artifact.RemoveLabel(ctx, &artifact.RemoveLabelParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference, LabelID: labelID, Context: ctx})
		return err
	})
	return err
}

// ScanArtifact asks Harbor to scan an artifact for vulnerabilities; the result comes later, in the artifact's
// scan overview and a SCANNING_COMPLETED or SCANNING_FAILED event. ErrConflict while a scan is pending,
// ErrBadRequest for an artifact the scanner does not support (HARBOR.md §7.1).
func (c *Client) ScanArtifact(ctx context.Context, projectName, repo, reference string) error {
	_, err := c.call(ctx, "scanning artifact", refString(projectName, repo, reference), func(ctx context.Context) error {
		_, err := c.api.Scan.ScanArtifact(ctx, &scan.ScanArtifactParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference,
			ScanType: &models.ScanType{ScanType: "vulnerability"}, Context: ctx})
		return err
	})
	return err
}

// Accessories lists every accessory of an artifact (cosign signatures, HARBOR.md §7.1).
func (c *Client) Accessories(ctx context.Context, projectName, repo, reference string) ([]Accessory, error) {
	return list(ctx, c, "listing accessories of", refString(projectName, repo, reference), func(ctx context.Context, page, size int64) ([]Accessory, int64, error) {
		ok, err := c.api.Artifact.ListAccessories(ctx, &artifact.ListAccessoriesParams{
			ProjectName: projectName, RepositoryName: escapeRepo(repo), Reference: reference,
			Page: &page, PageSize: &size, Context: ctx})
		if err != nil {
			return nil, 0, err
		}
		return accessoriesOf(ok.Payload), ok.XTotalCount, nil
	})
}

// refString is project/repo:tag or project/repo@digest, for messages.
func refString(projectName, repo, reference string) string {
	if strings.Contains(reference, ":") {
		return projectName + "/" + repo + "@" + reference
	}
	return projectName + "/" + repo + ":" + reference
}

func accessoriesOf(as []*models.Accessory) []Accessory {
	var out []Accessory
	for _, a := range as {
		if a == nil {
			continue
		}
		out = append(out, Accessory{ID: a.ID, ArtifactID: a.ArtifactID, Digest: a.Digest, Type: a.Type, Size: a.Size,
			SubjectArtifactID: a.SubjectArtifactID, SubjectArtifactDigest: a.SubjectArtifactDigest,
			SubjectArtifactRepo: a.SubjectArtifactRepo, CreationTime: timeOf(a.CreationTime)})
	}
	return out
}
