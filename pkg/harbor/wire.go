package harbor

import (
	"bytes"
	"io"
	"strconv"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/go-openapi/strfmt"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/artifact"
)

// Artifacts are read from Harbor's JSON into wireArtifact rather than go-client's models.Artifact: the
// models decode extra_attrs into generic maps and parse every time through strfmt's list of layouts, which
// made listing 5,000 artifacts take 1.7 times as long as raw net/http paging (BenchmarkListArtifacts). The
// requests are still go-client's (its params write path, escaping and query; its runtime sends them); only
// a success's body is read here, and every other answer goes to go-client's own reader, so that errors are
// the same typed errors and *runtime.APIError as for any other call.

// wireArtifact is an artifact as Harbor sends it (models.Artifact's JSON), with only the fields the client
// keeps.
type wireArtifact struct {
	ID                int64                  `json:"id"`
	ProjectID         int64                  `json:"project_id"`
	RepositoryID      int64                  `json:"repository_id"`
	RepositoryName    string                 `json:"repository_name"`
	Digest            string                 `json:"digest"`
	Type              string                 `json:"type"`
	MediaType         string                 `json:"media_type"`
	ManifestMediaType string                 `json:"manifest_media_type"`
	ArtifactType      string                 `json:"artifact_type"`
	Size              int64                  `json:"size"`
	PushTime          wireTime               `json:"push_time"`
	PullTime          wireTime               `json:"pull_time"`
	Tags              []wireTag              `json:"tags"`
	Labels            []wireLabel            `json:"labels"`
	ScanOverview      map[string]wireSummary `json:"scan_overview"`
	Accessories       []wireAccessory        `json:"accessories"`
	References        []wireReference        `json:"references"`
	Annotations       map[string]string      `json:"annotations"`
	// Values, not pointers: two allocations fewer per artifact.
	ExtraAttrs struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	} `json:"extra_attrs"`
}

type wireTag struct {
	ID        int64    `json:"id"`
	Name      string   `json:"name"`
	Immutable bool     `json:"immutable"`
	PushTime  wireTime `json:"push_time"`
	PullTime  wireTime `json:"pull_time"`
}

type wireLabel struct {
	ID           int64    `json:"id"`
	Name         string   `json:"name"`
	Description  string   `json:"description"`
	Color        string   `json:"color"`
	Scope        string   `json:"scope"`
	ProjectID    int64    `json:"project_id"`
	CreationTime wireTime `json:"creation_time"`
	UpdateTime   wireTime `json:"update_time"`
}

type wireSummary struct {
	ReportID        string   `json:"report_id"`
	ScanStatus      string   `json:"scan_status"`
	Severity        string   `json:"severity"`
	Duration        int64    `json:"duration"`
	StartTime       wireTime `json:"start_time"`
	EndTime         wireTime `json:"end_time"`
	CompletePercent int64    `json:"complete_percent"`
	Summary         *struct {
		Total   int64            `json:"total"`
		Fixable int64            `json:"fixable"`
		Summary map[string]int64 `json:"summary"`
	} `json:"summary"`
	Scanner *struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor"`
		Version string `json:"version"`
	} `json:"scanner"`
}

type wireAccessory struct {
	ID                    int64    `json:"id"`
	ArtifactID            int64    `json:"artifact_id"`
	Digest                string   `json:"digest"`
	Type                  string   `json:"type"`
	Size                  int64    `json:"size"`
	SubjectArtifactID     int64    `json:"subject_artifact_id"`
	SubjectArtifactDigest string   `json:"subject_artifact_digest"`
	SubjectArtifactRepo   string   `json:"subject_artifact_repo"`
	CreationTime          wireTime `json:"creation_time"`
}

type wireReference struct {
	ChildDigest string            `json:"child_digest"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

// wireTime is one of Harbor's times (2026-11-22T23:53:49.674Z). Harbor's "never" (0001-01-01…) and a time
// that does not parse are the zero time: a time the client cannot read must not fail a listing.
type wireTime struct{ time.Time }

func (t *wireTime) UnmarshalJSON(b []byte) error {
	t.Time = time.Time{}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' || bytes.IndexByte(b, '\\') >= 0 {
		return nil // null, not a string, or escaped (no time is): no time
	}
	s := string(b[1 : len(b)-1])
	tt, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		// Other layouts go-client accepts (strfmt's list), tried only when RFC 3339 fails.
		dt, err := strfmt.ParseDateTime(s)
		if err != nil {
			return nil //nolint:nilerr // a time the client cannot read is no time
		}
		tt = time.Time(dt)
	}
	if tt.Year() > 1 {
		t.Time = tt
	}
	return nil
}

func (w *wireArtifact) artifact() Artifact {
	a := Artifact{
		ID: w.ID, ProjectID: w.ProjectID, RepositoryID: w.RepositoryID, Repository: w.RepositoryName,
		Digest: w.Digest, Type: w.Type, MediaType: w.MediaType, ManifestMediaType: w.ManifestMediaType,
		ArtifactType: w.ArtifactType, Size: w.Size, PushTime: w.PushTime.Time, PullTime: w.PullTime.Time,
		Annotations: w.Annotations,
	}
	a.ConfigLabels = w.ExtraAttrs.Config.Labels
	if len(w.Tags) > 0 {
		a.Tags = make([]Tag, len(w.Tags))
		for i, t := range w.Tags {
			a.Tags[i] = Tag{ID: t.ID, Name: t.Name, Immutable: t.Immutable, PushTime: t.PushTime.Time, PullTime: t.PullTime.Time}
		}
	}
	for _, l := range w.Labels {
		a.Labels = append(a.Labels, Label{ID: l.ID, Name: l.Name, Description: l.Description, Color: l.Color, Scope: l.Scope,
			ProjectID: l.ProjectID, CreationTime: l.CreationTime.Time, UpdateTime: l.UpdateTime.Time})
	}
	for _, x := range w.Accessories {
		a.Accessories = append(a.Accessories, Accessory{ID: x.ID, ArtifactID: x.ArtifactID, Digest: x.Digest, Type: x.Type,
			Size: x.Size, SubjectArtifactID: x.SubjectArtifactID, SubjectArtifactDigest: x.SubjectArtifactDigest,
			SubjectArtifactRepo: x.SubjectArtifactRepo, CreationTime: x.CreationTime.Time})
	}
	for _, r := range w.References {
		ref := Reference{Digest: r.ChildDigest, Annotations: r.Annotations}
		if r.Platform != nil {
			ref.OS, ref.Architecture, ref.Variant = r.Platform.OS, r.Platform.Architecture, r.Platform.Variant
		}
		a.References = append(a.References, ref)
	}
	if len(w.ScanOverview) > 0 {
		a.ScanOverview = make(map[string]ScanSummary, len(w.ScanOverview))
		for mime, s := range w.ScanOverview {
			sum := ScanSummary{ReportID: s.ReportID, Status: s.ScanStatus, Severity: s.Severity, StartTime: s.StartTime.Time,
				EndTime: s.EndTime.Time, Duration: time.Duration(s.Duration) * time.Second, CompletePercent: s.CompletePercent}
			if s.Summary != nil {
				sum.Total, sum.Fixable, sum.BySeverity = s.Summary.Total, s.Summary.Fixable, s.Summary.Summary
			}
			if s.Scanner != nil {
				sum.Scanner = Scanner{Name: s.Scanner.Name, Vendor: s.Scanner.Vendor, Version: s.Scanner.Version}
			}
			a.ScanOverview[mime] = sum
		}
	}
	return a
}

// artifactsPage is a 200 of listArtifacts.
type artifactsPage struct {
	items []wireArtifact
	total int64
}

// listArtifactsReader reads a 200 of listArtifacts itself and leaves every other answer to go-client.
type listArtifactsReader struct{}

func (listArtifactsReader) ReadResponse(resp runtime.ClientResponse, consumer runtime.Consumer) (any, error) {
	if resp.Code() != 200 {
		return (&artifact.ListArtifactsReader{}).ReadResponse(resp, consumer)
	}
	p := &artifactsPage{}
	if err := consumer.Consume(resp.Body(), &p.items); err != nil && err != io.EOF {
		return nil, err
	}
	if v := resp.GetHeader("X-Total-Count"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, err
		}
		p.total = n
	}
	return p, nil
}

// getArtifactReader reads a 200 of getArtifact itself and leaves every other answer to go-client.
type getArtifactReader struct{}

func (getArtifactReader) ReadResponse(resp runtime.ClientResponse, consumer runtime.Consumer) (any, error) {
	if resp.Code() != 200 {
		return (&artifact.GetArtifactReader{}).ReadResponse(resp, consumer)
	}
	w := &wireArtifact{}
	if err := consumer.Consume(resp.Body(), w); err != nil && err != io.EOF {
		return nil, err
	}
	return w, nil
}
